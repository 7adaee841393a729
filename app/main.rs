//! The `wan-pilot` command: with no subcommand it opens the window; the subcommands script the
//! same library functions the window uses.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wan_pilot::cli;

#[derive(Parser)]
#[command(
    name = "wan-pilot",
    version,
    about = "Wan 2.2 video generation in ComfyUI without running out of GPU memory",
    long_about = "Wan 2.2 video generation in ComfyUI without running out of GPU memory.\n\n\
                  With no subcommand, opens the window."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Open the window, render it, write a PNG screenshot here and exit.
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// What wan-pilot understood of a workflow: models, frame count, size, samplers, compile nodes.
    Inspect {
        /// A UI or API workflow JSON, or a PNG/WebP/MP4/WebM that carries one.
        file: PathBuf,
        /// Print the documented JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// Node definitions to use instead of the bundled snapshot (a saved `/object_info`).
        #[arg(long, value_name = "FILE")]
        object_info: Option<PathBuf>,
    },
    /// The API-format prompt of a workflow, with wan-pilot's edits applied.
    Convert {
        file: PathBuf,
        /// Write the prompt here (atomically) instead of to standard output.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Frame count; snapped to 4n+1.
        #[arg(long, value_name = "N")]
        frames: Option<u32>,
        /// Size as WxH; snapped to the model's multiple (16 for 14B, 32 for 5B).
        #[arg(long, value_name = "WxH", value_parser = cli::parse_size)]
        size: Option<(u32, u32)>,
        /// torch.compile mode: off, default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs.
        #[arg(long, value_name = "MODE", value_parser = cli::parse_compile_mode)]
        compile: Option<wan_pilot::workflow::edit::CompileMode>,
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// The positive prompt text.
        #[arg(long, value_name = "TEXT")]
        prompt: Option<String>,
        /// Also save every decoded frame as PNG with this filename prefix (for previews).
        #[arg(long, value_name = "PREFIX")]
        frame_tap: Option<String>,
        #[arg(long, value_name = "FILE")]
        object_info: Option<PathBuf>,
    },
    /// Projected VRAM and time per frame count and compile mode, and the mode wan-pilot would choose.
    Plan {
        file: PathBuf,
        /// The card, by name ("RTX 4090"), instead of the one NVML finds.
        #[arg(long, value_name = "NAME", conflicts_with = "vram")]
        gpu: Option<String>,
        /// The card's memory in GiB, instead of the one NVML finds.
        #[arg(long, value_name = "GB")]
        vram: Option<f64>,
        /// Free memory in GiB before the run, as the server's /system_stats would report it.
        #[arg(long, value_name = "GB")]
        free_vram: Option<f64>,
        /// Frame counts to project, comma-separated (snapped to 4n+1).
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        frames: Option<Vec<u32>>,
        /// ComfyUI's --reserve-vram in GiB (default: 0.4 on Linux, 0.6–0.7 on Windows).
        #[arg(long, value_name = "GB")]
        reserve: Option<f64>,
        /// Memory the chosen mode must leave free, in GiB.
        #[arg(long, value_name = "GB", default_value_t = 2.0)]
        margin: f64,
        /// Size as WxH, where the workflow only knows it at run time.
        #[arg(long, value_name = "WxH", value_parser = cli::parse_size)]
        size: Option<(u32, u32)>,
        /// The server runs on Windows (larger default reserve).
        #[arg(long)]
        windows: bool,
        /// The server's PyTorch is 2.7 or older (no fused RMSNorm: more activation memory).
        #[arg(long)]
        old_torch: bool,
        /// The server runs with --use-split-cross-attention or --use-quad-cross-attention, which
        /// ComfyUI budgets 7.5 times more activation memory for.
        #[arg(long)]
        split_attention: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "FILE")]
        object_info: Option<PathBuf>,
        /// ComfyUI's install folder: the workflow's model files found there (models/…, and the
        /// folders of its extra_model_paths.yaml) are sized from their headers
        /// [default: $WAN_PILOT_COMFYUI_DIR when set].
        #[arg(long, value_name = "DIR")]
        comfyui: Option<PathBuf>,
    },
    /// A real generation, headless: starts ComfyUI (or uses a running one), picks the compile
    /// mode, runs with progress lines on stderr, retries on out-of-memory, and prints the paths
    /// of the outputs it saved.
    Run {
        /// Any ComfyUI workflow (UI or API JSON, or a file that carries one).
        file: PathBuf,
        /// Frame count; snapped to 4n+1.
        #[arg(long, value_name = "N")]
        frames: Option<u32>,
        /// ComfyUI's folder to start [default: $WAN_PILOT_COMFYUI_DIR, else the usual places].
        #[arg(long, value_name = "DIR", conflicts_with = "server")]
        comfyui: Option<PathBuf>,
        /// A ComfyUI server that already runs, used as it is (never stopped by wan-pilot).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Where finished runs go, one folder each [default: the app data folder's runs/].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// torch.compile mode, "auto" (the budget's choice) or "as-written".
        #[arg(long, value_name = "MODE", default_value = "auto")]
        compile: String,
        /// Size as WxH; snapped to the model's multiple.
        #[arg(long, value_name = "WxH", value_parser = cli::parse_size)]
        size: Option<(u32, u32)>,
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// The positive prompt text.
        #[arg(long, value_name = "TEXT")]
        prompt: Option<String>,
        /// Do not retry on the next rung after running out of GPU memory.
        #[arg(long)]
        no_retry: bool,
        /// Also save every decoded frame as PNG next to the video (Wan workflows).
        #[arg(long)]
        frame_tap: bool,
        /// The card, by name, instead of the one NVML finds.
        #[arg(long, value_name = "NAME", conflicts_with = "vram")]
        gpu: Option<String>,
        /// The card's memory in GiB, instead of the one NVML finds.
        #[arg(long, value_name = "GB")]
        vram: Option<f64>,
        /// ComfyUI's --reserve-vram in GiB.
        #[arg(long, value_name = "GB")]
        reserve: Option<f64>,
        /// Memory the chosen mode must leave free, in GiB.
        #[arg(long, value_name = "GB", default_value_t = 2.0)]
        margin: f64,
        /// The port to start the server on; the next free one when it is busy.
        #[arg(long, value_name = "PORT", default_value_t = 8188)]
        port: u16,
        /// An extra argument for the server's command line (repeatable); dropped when this
        /// ComfyUI does not accept it.
        #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        None => return window(args.screenshot),
        Some(Command::Inspect {
            file,
            json,
            object_info,
        }) => cli::inspect(&file, json, object_info.as_deref()),
        Some(Command::Convert {
            file,
            output,
            frames,
            size,
            compile,
            seed,
            prompt,
            frame_tap,
            object_info,
        }) => {
            let edits = wan_pilot::workflow::edit::Edits {
                frames,
                size,
                compile,
                seed,
                prompt,
                frame_tap_prefix: frame_tap,
            };
            cli::convert(&file, output.as_deref(), &edits, object_info.as_deref())
        }
        Some(Command::Plan {
            file,
            gpu,
            vram,
            free_vram,
            frames,
            reserve,
            margin,
            size,
            windows,
            old_torch,
            split_attention,
            json,
            object_info,
            comfyui,
        }) => {
            let comfyui_dir = comfyui.or_else(comfyui_dir_from_env);
            let options = cli::PlanOptions {
                request: wan_pilot::runs::plan::PlanRequest {
                    gpu,
                    vram_gib: vram,
                    free_vram_gib: free_vram,
                    reserve_gib: reserve,
                    margin_gib: margin,
                    size,
                    windows,
                    old_torch,
                    split_attention,
                    comfyui_dir,
                    server_devices: None,
                },
                frames,
                json,
            };
            cli::plan(&file, &options, object_info.as_deref())
        }
        Some(Command::Run {
            file,
            frames,
            comfyui,
            server,
            out,
            compile,
            size,
            seed,
            prompt,
            no_retry,
            frame_tap,
            gpu,
            vram,
            reserve,
            margin,
            port,
            server_args,
        }) => cli::parse_compile_choice(&compile).and_then(|compile| {
            let options = cli::RunOptions {
                file,
                frames,
                size,
                seed,
                prompt,
                compile,
                frame_tap,
                comfyui_dir: comfyui.or_else(comfyui_dir_from_env),
                server_url: server,
                out_dir: out,
                retry_on_oom: !no_retry,
                server_args,
                port,
                request: wan_pilot::runs::plan::PlanRequest {
                    gpu,
                    vram_gib: vram,
                    reserve_gib: reserve,
                    margin_gib: margin,
                    size,
                    ..Default::default()
                },
            };
            cli::run(&options)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("wan-pilot: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The window (no subcommand); with `--screenshot PATH` it renders once, writes the PNG and exits.
fn window(screenshot: Option<PathBuf>) -> ExitCode {
    match wan_pilot::ui::run_window(wan_pilot::ui::WindowOptions { screenshot }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wan-pilot: {message}");
            ExitCode::from(2)
        }
    }
}

/// `$WAN_PILOT_COMFYUI_DIR`, when set and not empty.
fn comfyui_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("WAN_PILOT_COMFYUI_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}
