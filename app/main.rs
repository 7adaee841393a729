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
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// A real generation, headless, with progress lines.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        None => cli::not_available("the window", "issue 5"),
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
        Some(Command::Plan { .. }) => cli::not_available("plan", "issue 3"),
        Some(Command::Run { .. }) => cli::not_available("run", "issue 4"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("wan-pilot: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
