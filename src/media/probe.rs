//! What an uploaded image really is: its format (from its bytes, not its claim), its size, a
//! blurhash placeholder and a thumbnail.
//!
//! Decoding is bounded: an image may be at most [`MAX_SIDE`] pixels a side and decoding it may
//! take at most [`MAX_DECODE_BYTES`] (the decoded image and a decoder's working frame, judged
//! from the header before any pixel is read), so a small file that declares huge dimensions (a
//! "decompression bomb") is refused instead of exhausting memory. Blocking: call from
//! `spawn_blocking`.

use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, GenericImageView, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Longest side of a stored image, in pixels.
pub const MAX_SIDE: u32 = 16_384;

/// Most memory the decoder may use for one image.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Longest side of a thumbnail; images no larger get none.
pub const THUMB_SIDE: u32 = 320;

/// Bytes per pixel of the working frame a decoder may hold beside the decoded image (RGBA8).
const WORKING_BYTES_PER_PIXEL: u64 = 4;

/// Blurhash components across and down (the reference implementation's default).
const BLURHASH_COMPONENTS: (u32, u32) = (4, 3);

/// The image types the node accepts, and only these: each decodes with a memory-safe decoder,
/// and none can carry script (SVG is refused for that reason).
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Why a file is not an acceptable image.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The bytes are not any accepted image format.
    #[error("the bytes are not a png, jpeg, gif or webp image")]
    NotAnImage,
    /// The bytes start like an image but do not decode.
    #[error("the {0} image does not decode: {1}")]
    Corrupt(&'static str, String),
    /// Too many pixels or too much memory to decode.
    #[error("the image is larger than {MAX_SIDE}×{MAX_SIDE} pixels or needs too much memory")]
    TooLarge,
    /// The file could not be read.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A made thumbnail, ready to store.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// Their type.
    pub mime_type: &'static str,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

/// What probing an image found.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The type the bytes really are.
    pub mime_type: &'static str,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// Blurhash of the image.
    pub blurhash: String,
    /// A thumbnail, if the image is larger than one.
    pub thumbnail: Option<Thumbnail>,
}

fn mime_of(format: ImageFormat) -> Option<&'static str> {
    match format {
        ImageFormat::Png => Some("image/png"),
        ImageFormat::Jpeg => Some("image/jpeg"),
        ImageFormat::Gif => Some("image/gif"),
        ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

/// Decodes the image at `path` (bounded) and describes it.
pub fn probe(path: &Path) -> Result<ImageFacts, ProbeError> {
    let file = std::fs::File::open(path)?;
    probe_reader(BufReader::new(file))
}

/// Decodes an image held in memory (bounded) and describes it: the same checks as [`probe`], for
/// callers that hold the bytes (the upload fuzz target in `fuzz/` and `tests/fuzz.rs`).
pub fn probe_bytes(bytes: &[u8]) -> Result<ImageFacts, ProbeError> {
    probe_reader(Cursor::new(bytes))
}

fn probe_reader<R: BufRead + Seek>(input: R) -> Result<ImageFacts, ProbeError> {
    let mut reader = ImageReader::new(input).with_guessed_format()?;
    let format = reader.format().ok_or(ProbeError::NotAnImage)?;
    let mime_type = mime_of(format).ok_or(ProbeError::NotAnImage)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let refusal = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => ProbeError::TooLarge,
        other => ProbeError::Corrupt(mime_type, other.to_string()),
    };
    // The header only: the declared size, checked against the limits before any pixel buffer.
    let decoder = reader.into_decoder().map_err(refusal)?;
    if decode_bytes(&decoder) > MAX_DECODE_BYTES {
        return Err(ProbeError::TooLarge);
    }
    let image = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    let (width, height) = image.dimensions();
    let thumbnail = if width > THUMB_SIDE || height > THUMB_SIDE {
        Some(thumbnail(&image.thumbnail(THUMB_SIDE, THUMB_SIDE))?)
    } else {
        None
    };
    Ok(ImageFacts {
        mime_type,
        width,
        height,
        blurhash: blurhash(&image),
        thumbnail,
    })
}

/// What decoding an image may allocate at worst, from its header alone: the decoded image
/// (`total_bytes`) and a working frame of [`WORKING_BYTES_PER_PIXEL`] per pixel. A decoder's own
/// allocations are not bounded by the image crate's `max_alloc`: lossless WebP without alpha
/// decodes into an RGBA frame beside the RGB image, animated WebP and GIF compose frames, so a
/// 26-byte WebP header declaring 16384×9622 pixels asked for 473 MB of image plus 631 MB of frame
/// (found by the `upload` fuzz target, `docs/FUZZING.md`).
fn decode_bytes(decoder: &impl ImageDecoder) -> u64 {
    let (width, height) = decoder.dimensions();
    let frame = u64::from(width)
        .saturating_mul(u64::from(height))
        .saturating_mul(WORKING_BYTES_PER_PIXEL);
    decoder.total_bytes().saturating_add(frame)
}

/// Encodes a thumbnail: PNG where there is transparency to keep, JPEG otherwise (far smaller
/// for photographs).
fn thumbnail(small: &DynamicImage) -> Result<Thumbnail, ProbeError> {
    let mut bytes = Vec::new();
    let mime_type = if small.color().has_alpha() {
        small
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| ProbeError::Corrupt("image/png", e.to_string()))?;
        "image/png"
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80);
        DynamicImage::ImageRgb8(small.to_rgb8())
            .write_with_encoder(encoder)
            .map_err(|e| ProbeError::Corrupt("image/jpeg", e.to_string()))?;
        "image/jpeg"
    };
    Ok(Thumbnail {
        bytes,
        mime_type,
        width: small.width(),
        height: small.height(),
    })
}

/// The blurhash of an image, computed on a 32-pixel version: the hash keeps only the lowest
/// frequencies, so the full image would give the same answer at far greater cost.
fn blurhash(image: &DynamicImage) -> String {
    let small = image.thumbnail(32, 32).to_rgba8();
    let (x, y) = BLURHASH_COMPONENTS;
    // Components are within 1..=9, so encoding cannot fail; an empty hash would only mean "none".
    blurhash::encode(x, y, small.width(), small.height(), small.as_raw()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(dir: &Path, width: u32, height: u32) -> std::path::PathBuf {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let path = dir.join("test.png");
        image.save(&path).unwrap();
        path
    }

    #[test]
    fn a_large_png_gets_size_blurhash_and_a_jpeg_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let facts = probe(&write_png(dir.path(), 640, 480)).unwrap();
        assert_eq!(facts.mime_type, "image/png");
        assert_eq!((facts.width, facts.height), (640, 480));
        // 4×3 components: 1 size flag + 1 max AC + 4 DC + 2 × 11 AC characters.
        assert_eq!(facts.blurhash.len(), 28, "{}", facts.blurhash);
        let thumb = facts.thumbnail.unwrap();
        assert_eq!(thumb.mime_type, "image/jpeg");
        assert_eq!((thumb.width, thumb.height), (320, 240));
        assert!(
            image::load_from_memory(&thumb.bytes).is_ok(),
            "thumbnail decodes"
        );
    }

    #[test]
    fn a_small_image_has_no_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let facts = probe(&write_png(dir.path(), 16, 16)).unwrap();
        assert!(facts.thumbnail.is_none());
    }

    #[test]
    fn text_is_not_an_image_and_a_truncated_png_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, b"hello, I am not a picture").unwrap();
        assert!(matches!(probe(&text), Err(ProbeError::NotAnImage)));
        let png = std::fs::read(write_png(dir.path(), 64, 64)).unwrap();
        let cut = dir.path().join("cut.png");
        std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
        assert!(matches!(
            probe(&cut),
            Err(ProbeError::Corrupt("image/png", _))
        ));
    }
}
