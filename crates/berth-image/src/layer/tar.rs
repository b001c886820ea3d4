//! The tar stream of a layer (POSIX.1-2001 "pax" over ustar headers, the
//! form Go's archive/tar writes for docker and buildkit): a ustar header
//! per entry, preceded by a pax extended header only when a value does
//! not fit ustar (names or link targets over 100 bytes or not ASCII, ids
//! over 2^21-1, sizes over 8 GiB, times before 1970) or when the entry
//! has xattrs (`SCHILY.xattr.<name>`). Records are sorted by key and no
//! field depends on the time of writing, so the bytes depend only on the
//! entries.

use std::io::{self, Read, Write};

/// Block size of the tar format.
const BLOCK: usize = 512;

/// The largest value of an 8-byte octal field (7 digits and a NUL).
const MAX_OCTAL_8: u64 = 0o7_777_777;

/// The largest value of a 12-byte octal field (11 digits and a NUL).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// The type of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Which side of a content copy failed.
#[derive(Debug)]
pub(super) enum Failed {
    /// Reading the file.
    Read(io::Error),
    /// Writing the stream.
    Write(io::Error),
}

/// One entry's header.
pub(super) struct Header<'a> {
    /// The entry's name, relative, a directory's ending in `/`.
    pub name: &'a [u8],
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of content that follow (regular files only).
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// A symlink's target or a hardlink's first name.
    pub link: &'a [u8],
    /// A device's major and minor numbers.
    pub dev: (u64, u64),
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes entries to `out`.
pub(super) struct TarWriter<W: Write> {
    out: io::BufWriter<W>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    pax: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub(super) fn new(out: W) -> Self {
        TarWriter {
            out: io::BufWriter::with_capacity(256 << 10, out),
            records: Vec::new(),
            pax: Vec::new(),
        }
    }

    /// Writes `h` (and a pax header before it when needed). A regular
    /// file's content must follow through [`TarWriter::content`].
    pub(super) fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        self.records.clear();
        let name = if fits(h.name, 100) {
            h.name
        } else {
            self.records.push((b"path".to_vec(), h.name.to_vec()));
            truncate(h.name, 100)
        };
        let link = if fits(h.link, 100) {
            h.link
        } else {
            self.records.push((b"linkpath".to_vec(), h.link.to_vec()));
            truncate(h.link, 100)
        };
        let mut number = |key: &str, v: u64, max: u64| -> u64 {
            if v > max {
                self.records
                    .push((key.as_bytes().to_vec(), v.to_string().into_bytes()));
                0
            } else {
                v
            }
        };
        let uid = number("uid", h.uid, MAX_OCTAL_8);
        let gid = number("gid", h.gid, MAX_OCTAL_8);
        let size = number("size", h.size, MAX_OCTAL_12);
        let mtime = match u64::try_from(h.mtime) {
            Ok(t) if t <= MAX_OCTAL_12 => t,
            _ => {
                self.records
                    .push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
                0
            }
        };
        for (k, v) in h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            self.records.push((key, v.clone()));
        }
        if !self.records.is_empty() {
            self.records.sort();
            self.pax.clear();
            for (k, v) in &self.records {
                pax_record(&mut self.pax, k, v);
            }
            let mut pax_name = b"PaxHeaders.0/".to_vec();
            let base = name
                .strip_suffix(b"/")
                .unwrap_or(name)
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(b"");
            pax_name.extend_from_slice(base);
            let block = ustar(&Fields {
                name: truncate(&pax_name, 100),
                flag: b'x',
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: self.pax.len() as u64,
                mtime: 0,
                link: b"",
                dev: (0, 0),
            });
            self.out.write_all(&block)?;
            self.out.write_all(&self.pax)?;
            pad(&mut self.out, self.pax.len() as u64)?;
        }
        let block = ustar(&Fields {
            name,
            flag: h.kind.flag(),
            mode: h.mode & 0o7777,
            uid,
            gid,
            size,
            mtime,
            link,
            dev: h.dev,
        });
        self.out.write_all(&block)
    }

    /// Copies exactly `size` bytes of content from `r` (in chunks of
    /// `buf`) and pads them to a block. Fewer bytes is an error: the file
    /// shrank after its size was taken, and the header already says how
    /// much follows.
    pub(super) fn content(
        &mut self,
        mut r: impl Read,
        size: u64,
        buf: &mut [u8],
    ) -> Result<(), Failed> {
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Failed::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the file shrank while being read ({} of {size} bytes)",
                            size - left
                        ),
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failed::Read(e)),
            };
            self.out.write_all(&buf[..n]).map_err(Failed::Write)?;
            left -= n as u64;
        }
        pad(&mut self.out, size).map_err(Failed::Write)
    }

    /// Ends the archive (two zero blocks) and returns the writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Whether `s` goes in a ustar field of `len` bytes as it is.
fn fits(s: &[u8], len: usize) -> bool {
    s.len() <= len && s.is_ascii() && !s.contains(&0)
}

fn truncate(s: &[u8], len: usize) -> &[u8] {
    &s[..s.len().min(len)]
}

/// Appends one `"<len> <key>=<value>\n"` record, `len` counting itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while rest + len.to_string().len() != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

struct Fields<'a> {
    name: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u64, u64),
}

/// A ustar header block; values must already fit their fields.
fn ustar(f: &Fields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..f.name.len()].copy_from_slice(f.name);
    octal(&mut b[100..108], u64::from(f.mode));
    octal(&mut b[108..116], f.uid);
    octal(&mut b[116..124], f.gid);
    octal(&mut b[124..136], f.size);
    octal(&mut b[136..148], f.mtime);
    b[156] = f.flag;
    b[157..157 + f.link.len()].copy_from_slice(f.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname and gname stay empty: ids are numeric, as in image layers.
    octal(&mut b[329..337], f.dev.0.min(MAX_OCTAL_8));
    octal(&mut b[337..345], f.dev.1.min(MAX_OCTAL_8));
    // The checksum is taken with its own field as spaces.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b
}

/// Zero-padded octal digits filling `field` but its last byte (a NUL).
fn octal(field: &mut [u8], mut v: u64) {
    let n = field.len() - 1;
    for i in (0..n).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[n] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(name: &'a [u8], link: &'a [u8], xattrs: &'a [(Vec<u8>, Vec<u8>)]) -> Header<'a> {
        Header {
            name,
            kind: Kind::File,
            mode: 0o4755,
            uid: 1000,
            gid: 3_000_000,
            size: 5,
            mtime: -10,
            link,
            dev: (0, 0),
            xattrs,
        }
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v, want) in [
            ("a", "b", "6 a=b\n"),
            ("path", "x".repeat(93).as_str(), ""),
            ("k", "", "5 k=\n"),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k.as_bytes(), v.as_bytes());
            let (len, _) = std::str::from_utf8(&out).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{out:?}");
            if !want.is_empty() {
                assert_eq!(out, want.as_bytes());
            }
        }
        // Where the length gains a digit: 99 bytes, then 101 (a record
        // of 100 would need a 2-digit length).
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'x'; 90]);
        assert_eq!(out.len(), 99);
        assert!(out.starts_with(b"99 "));
        out.clear();
        pax_record(&mut out, b"path", &[b'x'; 91]);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 "));
    }

    #[test]
    fn tar_crate_reads_what_is_written() {
        let long = format!("{}/{}", "d".repeat(80), "f".repeat(80));
        let xattrs = vec![(b"user.k".to_vec(), b"v\0bin".to_vec())];
        let mut w = TarWriter::new(Vec::new());
        let mut buf = vec![0u8; 3];
        w.header(&entry(long.as_bytes(), b"", &xattrs)).unwrap();
        w.content(&b"hello"[..], 5, &mut buf).unwrap();
        w.header(&Header {
            kind: Kind::Hardlink,
            size: 0,
            mtime: 7,
            gid: 0,
            ..entry("h\u{e9}".as_bytes(), long.as_bytes(), &[])
        })
        .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut it = ar.entries().unwrap();
        let mut e = it.next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        assert_eq!(e.header().uid().unwrap(), 1000);
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        let keys: Vec<&str> = pax.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["SCHILY.xattr.user.k", "gid", "mtime", "path"]);
        assert_eq!(pax[0].1, b"v\0bin");
        assert_eq!(pax[1].1, b"3000000");
        assert_eq!(pax[2].1, b"-10");
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let e = it.next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), "h\u{e9}".as_bytes());
        assert_eq!(e.link_name_bytes().unwrap().as_ref(), long.as_bytes());
        assert_eq!(e.header().mtime().unwrap(), 7);
        assert!(e.header().entry_type().is_hard_link());
        assert!(it.next().is_none());
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let mut w = TarWriter::new(Vec::new());
        let mut buf = vec![0u8; 16];
        match w.content(&b"abc"[..], 10, &mut buf) {
            Err(Failed::Read(e)) => assert!(e.to_string().contains("3 of 10"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
