//! The window icon: `assets/icon.png`, drawn by [`draw_icon`] (a film frame with a rising VRAM
//! bar) and committed, so packaging finds the same file.

use image::{Rgba, RgbaImage};

/// The committed icon's bytes.
const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");

/// The icon for the window, `None` when the PNG cannot be decoded (the default icon is used).
pub fn icon_data() -> Option<egui::IconData> {
    let image = image::load_from_memory(ICON_PNG).ok()?.into_rgba8();
    let (width, height) = image.dimensions();
    Some(egui::IconData {
        rgba: image.into_raw(),
        width,
        height,
    })
}

/// Draws the icon at `size` pixels square.
pub fn draw_icon(size: u32) -> RgbaImage {
    let mut image = RgbaImage::from_pixel(size, size, Rgba([0, 0, 0, 0]));
    let s = size as f32;
    let background = Rgba([28, 36, 52, 255]);
    let frame = Rgba([90, 160, 240, 255]);
    let hole = Rgba([28, 36, 52, 255]);
    let bars = [
        Rgba([80, 200, 120, 255]),
        Rgba([230, 190, 60, 255]),
        Rgba([230, 90, 70, 255]),
    ];
    let radius = s * 0.18;
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            // Rounded square background.
            let dx = (radius - fx).max(fx - (s - radius)).max(0.0);
            let dy = (radius - fy).max(fy - (s - radius)).max(0.0);
            if dx * dx + dy * dy > radius * radius {
                continue;
            }
            let mut colour = background;
            // Film strip: two bands with sprocket holes.
            let band = fx < s * 0.2 || fx > s * 0.8;
            if band && fy > s * 0.1 && fy < s * 0.9 {
                colour = frame;
                let hole_row = ((fy / (s * 0.12)) as u32).is_multiple_of(2);
                let in_hole_x =
                    (fx > s * 0.06 && fx < s * 0.14) || (fx > s * 0.86 && fx < s * 0.94);
                if hole_row && in_hole_x {
                    colour = hole;
                }
            }
            // Three rising bars in the middle: fits, offload, over.
            for (i, bar) in bars.iter().enumerate() {
                let left = s * (0.27 + 0.16 * i as f32);
                let top = s * (0.62 - 0.17 * i as f32);
                if fx > left && fx < left + s * 0.12 && fy > top && fy < s * 0.82 {
                    colour = *bar;
                }
            }
            image.put_pixel(x, y, colour);
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_icon_decodes() {
        let icon = icon_data().expect("assets/icon.png decodes");
        assert_eq!(icon.rgba.len() as u32, icon.width * icon.height * 4);
    }

    /// Redraws `assets/icon.png`: `cargo test --lib ui::icon -- --ignored`.
    #[test]
    #[ignore]
    fn write_the_icon() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/icon.png");
        draw_icon(256).save(&path).expect("write the icon");
    }
}
