//! VNC screenshots (the VMI's `vnc/screenshot` subresource): a minimal RFB 3.8 client reads one
//! full framebuffer from QEMU's VNC server in the launcher pod, and [`png`] encodes it. The
//! client asks for what it can read: no security, 32-bit true colour, the Raw encoding only.

use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest screen accepted (QEMU's VGA tops out far below this); it bounds the buffer a
/// misbehaving server could make us allocate.
const MAX_PIXELS: usize = 16 * 1024 * 1024;
/// The longest reason or cut text read from the server.
const MAX_TEXT: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    #[error("reading from the VNC server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the VNC server speaks {0:?}, not RFB 3.x")]
    Version(String),
    #[error("the VNC server refused the connection: {0}")]
    Refused(String),
    #[error("the VNC server offers no security type without a password ({0:?})")]
    NoSecurityNone(Vec<u8>),
    #[error("the VNC server sent {0}")]
    Protocol(String),
}

/// The screen: `width` x `height` pixels, RGB, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub width: u16,
    pub height: u16,
    pub rgb: Vec<u8>,
}

async fn read_text<S: AsyncRead + Unpin>(io: &mut S) -> Result<String, RfbError> {
    let len = io.read_u32().await?;
    if len > MAX_TEXT {
        return Err(RfbError::Protocol(format!("a text of {len} bytes")));
    }
    let mut buf = vec![0; len as usize];
    io.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn skip<S: AsyncRead + Unpin>(io: &mut S, n: u64) -> Result<(), RfbError> {
    let copied = tokio::io::copy(&mut (&mut *io).take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(RfbError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Reads the whole screen once. With `move_cursor` the pointer is moved first (it wakes a guest
/// whose screensaver blanked the screen).
pub async fn capture<S>(mut io: S, move_cursor: bool) -> Result<Frame, RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut version = [0u8; 12];
    io.read_exact(&mut version).await?;
    if !version.starts_with(b"RFB 003.") {
        return Err(RfbError::Version(
            String::from_utf8_lossy(&version).into_owned(),
        ));
    }
    io.write_all(b"RFB 003.008\n").await?;
    let count = io.read_u8().await?;
    if count == 0 {
        return Err(RfbError::Refused(read_text(&mut io).await?));
    }
    let mut types = vec![0u8; usize::from(count)];
    io.read_exact(&mut types).await?;
    if !types.contains(&1) {
        return Err(RfbError::NoSecurityNone(types));
    }
    io.write_all(&[1]).await?;
    if io.read_u32().await? != 0 {
        return Err(RfbError::Refused(read_text(&mut io).await?));
    }
    // ClientInit: shared, so a viewer already connected stays connected.
    io.write_all(&[1]).await?;
    let width = io.read_u16().await?;
    let height = io.read_u16().await?;
    let mut server_format = [0u8; 16];
    io.read_exact(&mut server_format).await?;
    let _name = read_text(&mut io).await?;
    let pixels = usize::from(width) * usize::from(height);
    if pixels > MAX_PIXELS {
        return Err(RfbError::Protocol(format!("a {width}x{height} screen")));
    }

    let mut msg = Vec::with_capacity(64);
    // SetPixelFormat: 32 bits per pixel, depth 24, little endian, true colour, 8 bits per
    // channel at shifts 16 (red), 8 (green), 0 (blue).
    msg.extend_from_slice(&[
        0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
    ]);
    // SetEncodings: Raw only.
    msg.extend_from_slice(&[2, 0, 0, 1, 0, 0, 0, 0]);
    if move_cursor {
        for (x, y) in [(0u16, 0u16), (1, 1)] {
            msg.push(5);
            msg.push(0);
            msg.extend_from_slice(&x.to_be_bytes());
            msg.extend_from_slice(&y.to_be_bytes());
        }
    }
    // FramebufferUpdateRequest, not incremental, the whole screen.
    msg.extend_from_slice(&[3, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(&width.to_be_bytes());
    msg.extend_from_slice(&height.to_be_bytes());
    io.write_all(&msg).await?;
    io.flush().await?;

    let mut rgb = vec![0u8; pixels * 3];
    loop {
        match io.read_u8().await? {
            0 => {
                io.read_u8().await?;
                let rects = io.read_u16().await?;
                for _ in 0..rects {
                    let x = usize::from(io.read_u16().await?);
                    let y = usize::from(io.read_u16().await?);
                    let w = usize::from(io.read_u16().await?);
                    let h = usize::from(io.read_u16().await?);
                    let encoding = io.read_i32().await?;
                    if encoding != 0 {
                        return Err(RfbError::Protocol(format!(
                            "encoding {encoding}, which was not asked for"
                        )));
                    }
                    if x + w > usize::from(width) || y + h > usize::from(height) {
                        return Err(RfbError::Protocol(format!(
                            "a rectangle {w}x{h} at {x},{y} outside the {width}x{height} screen"
                        )));
                    }
                    let mut row = vec![0u8; w * 4];
                    for r in 0..h {
                        io.read_exact(&mut row).await?;
                        let start = ((y + r) * usize::from(width) + x) * 3;
                        for (i, px) in row.chunks_exact(4).enumerate() {
                            // Little endian 0x00RRGGBB: blue, green, red, unused.
                            rgb[start + i * 3] = px[2];
                            rgb[start + i * 3 + 1] = px[1];
                            rgb[start + i * 3 + 2] = px[0];
                        }
                    }
                }
                // The answer to a non-incremental request covers the screen.
                return Ok(Frame { width, height, rgb });
            }
            // SetColourMapEntries (unused in true colour): padding, first colour, count.
            1 => {
                io.read_u8().await?;
                io.read_u16().await?;
                let n = io.read_u16().await?;
                skip(&mut io, u64::from(n) * 6).await?;
            }
            // Bell.
            2 => {}
            // ServerCutText: three bytes of padding, then the text.
            3 => {
                skip(&mut io, 3).await?;
                read_text(&mut io).await?;
            }
            other => {
                return Err(RfbError::Protocol(format!("message type {other}")));
            }
        }
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    // A chunk holds far less than 4 GiB (the screen is bounded by MAX_PIXELS).
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// `frame` as a PNG: 8-bit RGB, no filtering, one zlib stream.
pub fn png(frame: &Frame) -> std::io::Result<Vec<u8>> {
    let row = usize::from(frame.width) * 3;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in frame.rgb.chunks(row.max(1)).take(usize::from(frame.height)) {
        // Filter type 0 (None) before each row.
        z.write_all(&[0])?;
        z.write_all(line)?;
    }
    let data = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&u32::from(frame.width).to_be_bytes());
    ihdr.extend_from_slice(&u32::from(frame.height).to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A server side of RFB 3.8 sending a `w` x `h` screen whose pixel (x, y) is
    /// (x, y, x + y) in RGB, preceded by a bell and a cut text; returns what the client sent.
    async fn serve(mut io: tokio::io::DuplexStream, w: u16, h: u16) -> Vec<u8> {
        io.write_all(b"RFB 003.008\n").await.unwrap();
        let mut v = [0u8; 12];
        io.read_exact(&mut v).await.unwrap();
        assert_eq!(&v, b"RFB 003.008\n");
        io.write_all(&[2, 2, 1]).await.unwrap();
        assert_eq!(io.read_u8().await.unwrap(), 1, "security None chosen");
        io.write_u32(0).await.unwrap();
        assert_eq!(io.read_u8().await.unwrap(), 1, "shared");
        io.write_u16(w).await.unwrap();
        io.write_u16(h).await.unwrap();
        io.write_all(&[0; 16]).await.unwrap();
        io.write_u32(4).await.unwrap();
        io.write_all(b"test").await.unwrap();
        // SetPixelFormat (20) + SetEncodings (8) + FramebufferUpdateRequest (10), after any
        // pointer events (6 each).
        let mut got = Vec::new();
        loop {
            let mut b = [0u8; 1];
            io.read_exact(&mut b).await.unwrap();
            got.push(b[0]);
            if got.len() >= 38 && got[got.len() - 10] == 3 {
                break;
            }
        }
        io.write_all(&[2, 3, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'])
            .await
            .unwrap();
        // Two rectangles: the top row, then the rest.
        io.write_all(&[0, 0, 0, 2]).await.unwrap();
        for (y0, rows) in [(0u16, 1u16), (1, h - 1)] {
            for v in [0u16, y0, w, rows] {
                io.write_u16(v).await.unwrap();
            }
            io.write_i32(0).await.unwrap();
            for y in y0..y0 + rows {
                for x in 0..w {
                    let (r, g, b) = (x as u8, y as u8, (x + y) as u8);
                    io.write_all(&[b, g, r, 0]).await.unwrap();
                }
            }
        }
        got
    }

    #[tokio::test]
    async fn reads_one_raw_frame_and_moves_the_cursor_when_asked() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(serve(server, 5, 3));
        let frame = capture(client, true).await.unwrap();
        let sent = server.await.unwrap();
        assert_eq!((frame.width, frame.height), (5, 3));
        for y in 0..3usize {
            for x in 0..5usize {
                let i = (y * 5 + x) * 3;
                assert_eq!(
                    &frame.rgb[i..i + 3],
                    &[x as u8, y as u8, (x + y) as u8],
                    "pixel {x},{y}"
                );
            }
        }
        // SetPixelFormat first, then Raw as the only encoding, two pointer events, then a full,
        // non-incremental update request for 5x3.
        assert_eq!(sent[0], 0);
        assert_eq!(sent[4..8], [32, 24, 0, 1]);
        assert_eq!(sent[20..28], [2, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(sent[28], 5);
        assert_eq!(sent[34], 5);
        assert_eq!(sent[40..], [3, 0, 0, 0, 0, 0, 0, 5, 0, 3]);
    }

    #[tokio::test]
    async fn a_refusal_or_a_password_is_an_error() {
        let (client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            server.write_all(b"RFB 003.008\n").await.unwrap();
            let mut v = [0u8; 12];
            server.read_exact(&mut v).await.unwrap();
            server.write_all(&[1, 2]).await.unwrap();
            let _ = server.read_u8().await;
        });
        let e = capture(client, false).await.unwrap_err();
        assert!(
            matches!(e, RfbError::NoSecurityNone(ref t) if t == &[2]),
            "{e}"
        );

        let (client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            server.write_all(b"SSH-2.0-x\r\n\0").await.unwrap();
        });
        let e = capture(client, false).await.unwrap_err();
        assert!(matches!(e, RfbError::Version(_)), "{e}");
    }

    #[test]
    fn png_holds_the_frame() {
        let frame = Frame {
            width: 3,
            height: 2,
            rgb: (0..18).collect(),
        };
        let png = png(&frame).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: length 13, type, 3 x 2, 8-bit RGB.
        assert_eq!(&png[8..16], &[0, 0, 0, 13, b'I', b'H', b'D', b'R']);
        assert_eq!(&png[16..24], &[0, 0, 0, 3, 0, 0, 0, 2]);
        assert_eq!(&png[24..26], &[8, 2]);
        // CRC of IHDR as zlib's crc32 computes it for "IHDR" + data.
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        assert_eq!(&png[29..33], &crc.sum().to_be_bytes());
        // IDAT inflates to the rows, each after its filter byte.
        let len = u32::from_be_bytes([png[33], png[34], png[35], png[36]]) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + len])
            .read_to_end(&mut raw)
            .unwrap();
        let mut want = vec![0u8];
        want.extend(0..9u8);
        want.push(0);
        want.extend(9..18u8);
        assert_eq!(raw, want);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }
}
