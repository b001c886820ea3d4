//! Making layers (image-spec "Image Layer Filesystem Changeset"): a
//! directory of changes in overlayfs's upper-dir form (a build step's
//! upper dir, or plain files) turned into a gzip layer blob in the store,
//! and an upper dir adopted as the unpacked form of the layer it became.
//!
//! The input is read as overlayfs wrote it: a 0/0 character device is a
//! whiteout and becomes `.wh.NAME`; a directory with
//! `trusted.overlay.opaque=y` becomes the directory and `.wh..wh..opq`
//! in it. overlayfs's own xattrs never reach the layer. Everything else
//! goes in as `docker build` puts it: numeric owners, the full mode,
//! mtimes in seconds, xattrs as `SCHILY.xattr.*`, hardlinks within the
//! layer as link entries to the first name, sockets left out.
//!
//! The walk never follows a symlink: each directory is opened relative to
//! its parent's descriptor with O_NOFOLLOW, entries are lstat'd by name
//! under it, and files are opened with O_NOFOLLOW, so a symlink in the
//! input (`etc -> /etc`) is written as a symlink and nothing outside the
//! directory is read.
//!
//! The blob's bytes depend only on the tree: entries in order (each
//! directory's names sorted, a directory before what it holds), no atime
//! or ctime, no user or group names, a gzip header without a name or a
//! time, and one fixed compression level.

mod tar;
mod xattr;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, futimens, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

use self::tar::{Failed, Header, Kind, TarWriter};
use self::xattr::Source;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::store::{media, Descriptor, Store};

/// The gzip level layers are written with. Level 1 rather than zlib's
/// default 6: a build writes a layer per step and waits for it, and on a
/// tree of binaries and text level 6 took 2.5 times as long for a blob
/// only 14% smaller. Fixed, because the digest depends on it.
pub const GZIP_LEVEL: u32 = 1;

/// How a layer is written.
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// `SOURCE_DATE_EPOCH`: mtimes newer than this (seconds since the
    /// epoch) are written as this, so rebuilding from the same sources
    /// gives the same layer whenever the files were touched.
    pub mtime_clamp: Option<i64>,
}

/// A layer written into the store.
#[derive(Clone, Debug)]
pub struct NewLayer {
    /// The blob (`application/vnd.oci.image.layer.v1.tar+gzip`).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Tar entries written, whiteouts and opaque markers included (pax
    /// headers not).
    pub entries: u64,
}

/// The name of the marker that makes a directory opaque in a layer.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// A chunk of file content on its way into the tar.
const BUF_SIZE: usize = 1 << 20;

/// The tar stream goes to the compressor in chunks of this size, at most
/// this many in flight.
const PIPE_CHUNK: usize = 1 << 20;
const PIPE_DEPTH: usize = 4;

/// The writing end of the pipe to the compressing thread.
struct Pipe {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Pipe {
    fn new(tx: mpsc::SyncSender<Vec<u8>>) -> Pipe {
        Pipe {
            tx,
            buf: Vec::with_capacity(PIPE_CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))
    }
}

impl Write for Pipe {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

impl Store {
    /// Writes the tree at `dir` (overlayfs upper-dir form) as a gzip
    /// layer blob into the store; see the module documentation for what
    /// each kind of file becomes. The blob appears by rename once
    /// complete, named by its digest. Errors name the file in `dir` they
    /// concern; an upper dir from an overlay mounted with `redirect_dir`
    /// or `metacopy` on is refused (a renamed directory or a
    /// metadata-only copy cannot be expressed in a layer). An upper dir
    /// is to be read once its overlay is unmounted: overlayfs does not
    /// expect its upper dir to be used while mounted.
    pub fn write_layer(&self, dir: &Path, opts: &LayerOptions) -> Result<NewLayer> {
        let tmp_dir = self.root().join("tmp");
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir)
            .map_err(|e| Error::io("create temp file in", &tmp_dir, e))?;
        let out = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io("open", tmp.path(), e))?;
        let blob = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, out));
        let gz = flate2::GzBuilder::new()
            .operating_system(255)
            .write(blob, flate2::Compression::new(GZIP_LEVEL));
        let top = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", dir, e.into()))?;
        let mut top = Dir::from_fd(top).map_err(|e| Error::io("open", dir, e.into()))?;
        let write_err = |e: io::Error| Error::io("write", tmp.path(), e);

        // Compression, the bulk of the work, runs on a thread of its own
        // while this one walks, reads and hashes the tar stream.
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let (walked, compressed) = std::thread::scope(|s| {
            let compressor = s.spawn(move || -> io::Result<_> {
                let mut gz = gz;
                for chunk in rx {
                    gz.write_all(&chunk)?;
                }
                Ok(gz.finish()?.finish())
            });
            let walked = (|| -> Result<(Digest, u64)> {
                let mut w = Walk {
                    root: dir,
                    clamp: opts.mtime_clamp,
                    tar: TarWriter::new(HashingWriter::new(Pipe::new(tx))),
                    links: HashMap::new(),
                    name: Vec::new(),
                    buf: vec![0; BUF_SIZE],
                    entries: 0,
                };
                w.dir(&mut top)?;
                let (mut pipe, diff_id, _) = w.tar.finish().map_err(write_err)?.finish();
                pipe.flush().map_err(write_err)?;
                Ok((diff_id, w.entries))
            })();
            // The walk's sender is gone (dropped with the walk), so the
            // compressor ends.
            let compressed = compressor
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compressing thread panicked")));
            (walked, compressed)
        });
        // A failed compressor shows in the walk as a closed pipe: its own
        // error is the one to report.
        let (buf, digest, size) = compressed.map_err(write_err)?;
        let (diff_id, entries) = walked?;
        let file = buf.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("sync", tmp.path(), e))?;
        let dest = self.blob_path(&digest);
        tmp.persist(&dest)
            .map_err(|e| Error::io("rename into", &dest, e.error))?;
        tracing::debug!(dir = %dir.display(), %digest, %diff_id, entries, size, "layer written");
        Ok(NewLayer {
            descriptor: Descriptor {
                media_type: media::LAYER_GZIP.into(),
                digest: digest.to_string(),
                size,
                platform: None,
                annotations: BTreeMap::new(),
            },
            diff_id,
            entries,
        })
    }

    /// Moves `dir`, already the overlay form of layer `diff_id` (a build
    /// step's upper dir whose layer [`Store::write_layer`] just wrote),
    /// into the unpacked-layer cache, so it serves as a lower dir without
    /// being unpacked again. Sockets in it are removed first, as the layer
    /// has none. When the cache already holds that layer, `dir` is
    /// removed instead. Returns the cached directory, as
    /// [`Store::layer_dir`] would. `dir` must be on the store's file
    /// system (the move is a rename).
    pub fn adopt_layer(&self, diff_id: &Digest, dir: &Path) -> Result<PathBuf> {
        let dest = self.root().join("layers/sha256").join(diff_id.hex());
        let m = fs::symlink_metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
        if !m.is_dir() {
            return Err(Error::io(
                "adopt",
                dir,
                io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            ));
        }
        // Never rename over an existing (possibly empty, possibly mounted)
        // layer: its content is the same, so this copy is surplus.
        if !dest.is_dir() {
            let fd = nix::fcntl::open(
                dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("open", dir, e.into()))?;
            let mut d = Dir::from_fd(fd).map_err(|e| Error::io("open", dir, e.into()))?;
            remove_sockets(&mut d, dir)?;
            match fs::rename(dir, &dest) {
                Ok(()) => return Ok(dest),
                Err(_) if dest.is_dir() => {}
                Err(e) => return Err(Error::io("move into the layer cache", dir, e)),
            }
        }
        fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
        Ok(dest)
    }
}

/// Removes every socket under the open directory `d` (at `path`),
/// descending without following symlinks. A directory that held one keeps
/// its times, so it stays as the layer has it.
fn remove_sockets(d: &mut Dir, path: &Path) -> Result<()> {
    let before = fstat(d.as_fd()).map_err(|e| Error::io("stat", path, e.into()))?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| Error::io("read directory", path, e.into()))?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    let mut removed = false;
    for n in names {
        let p = path.join(OsStr::from_bytes(n.to_bytes()));
        let st = fstatat(d.as_fd(), n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", &p, e.into()))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt == SFlag::S_IFSOCK {
            nix::unistd::unlinkat(
                d.as_fd(),
                n.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(|e| Error::io("remove", &p, e.into()))?;
            removed = true;
        } else if fmt == SFlag::S_IFDIR {
            let fd = openat(
                d.as_fd(),
                n.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("open", &p, e.into()))?;
            let mut child = Dir::from_fd(fd).map_err(|e| Error::io("open", &p, e.into()))?;
            remove_sockets(&mut child, &p)?;
        }
    }
    if removed {
        let atime = TimeSpec::new(before.st_atime, before.st_atime_nsec);
        let mtime = TimeSpec::new(before.st_mtime, before.st_mtime_nsec);
        futimens(d.as_fd(), &atime, &mtime)
            .map_err(|e| Error::io("set times of", path, e.into()))?;
    }
    Ok(())
}

/// The walk of one layer's tree.
struct Walk<'a, W: Write> {
    root: &'a Path,
    clamp: Option<i64>,
    tar: TarWriter<W>,
    /// First name of each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The current entry's name relative to the root.
    name: Vec<u8>,
    buf: Vec<u8>,
    entries: u64,
}

/// What overlayfs's xattrs on a file say.
#[derive(Default)]
struct Overlay {
    opaque: bool,
    whiteout: bool,
}

impl<W: Write> Walk<'_, W> {
    /// Writes every entry of the open directory `d`, whose name (empty
    /// for the root, else ending in `/`) is in `self.name`.
    fn dir(&mut self, d: &mut Dir) -> Result<()> {
        let mut names: Vec<CString> = Vec::new();
        for e in d.iter() {
            let e = e.map_err(|e| self.error("read directory", e))?;
            let n = e.file_name();
            if n != c"." && n != c".." {
                names.push(n.to_owned());
            }
        }
        names.sort();
        for n in names {
            let len = self.name.len();
            self.name.extend_from_slice(n.to_bytes());
            let r = self.entry(d.as_fd(), &n);
            self.name.truncate(len);
            r?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, n: &CStr) -> Result<()> {
        let st =
            fstatat(dir, n, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| self.error("stat", e))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt == SFlag::S_IFDIR {
            return self.directory(dir, n, &st);
        }
        if fmt == SFlag::S_IFCHR && st.st_rdev == 0 {
            // Checked before hardlinks: overlayfs links its whiteouts to
            // one shared inode.
            return self.whiteout(&st);
        }
        if fmt == SFlag::S_IFSOCK {
            tracing::debug!(path = %self.host().display(), "socket left out of the layer");
            return Ok(());
        }
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                self.tar
                    .header(&Header {
                        kind: Kind::Hardlink,
                        link: first,
                        ..base(&self.name, self.clamp, &st)
                    })
                    .map_err(|e| self.write_error(e))?;
                self.entries += 1;
                return Ok(());
            }
        }
        if fmt == SFlag::S_IFREG {
            if !self.file(dir, n, &st)? {
                return Ok(());
            }
        } else {
            let mut xattrs =
                xattr::read_all(Source::At(dir, n)).map_err(|e| self.error("read xattrs of", e))?;
            self.overlay_attrs(&mut xattrs)?;
            let target;
            let (kind, link, dev) = if fmt == SFlag::S_IFLNK {
                target = readlinkat(dir, n).map_err(|e| self.error("read link", e))?;
                (Kind::Symlink, target.as_bytes(), (0, 0))
            } else {
                let dev = (
                    nix::sys::stat::major(st.st_rdev),
                    nix::sys::stat::minor(st.st_rdev),
                );
                match fmt {
                    SFlag::S_IFCHR => (Kind::Char, &b""[..], dev),
                    SFlag::S_IFBLK => (Kind::Block, &b""[..], dev),
                    SFlag::S_IFIFO => (Kind::Fifo, &b""[..], (0, 0)),
                    _ => {
                        tracing::debug!(path = %self.host().display(), "unknown file type left out");
                        return Ok(());
                    }
                }
            };
            self.tar
                .header(&Header {
                    kind,
                    link,
                    dev,
                    xattrs: &xattrs,
                    ..base(&self.name, self.clamp, &st)
                })
                .map_err(|e| self.write_error(e))?;
            self.entries += 1;
        }
        if st.st_nlink > 1 {
            self.links.insert((st.st_dev, st.st_ino), self.name.clone());
        }
        Ok(())
    }

    /// A regular file and its content. False when it turned out to be a
    /// whiteout (written as one) rather than a file.
    fn file(&mut self, dir: BorrowedFd<'_>, n: &CStr, st: &FileStat) -> Result<bool> {
        let fd = openat(
            dir,
            n,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.error("open", e))?;
        let now = fstat(&fd).map_err(|e| self.error("stat", e))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(self.error("open", Errno::ESTALE));
        }
        let mut xattrs =
            xattr::read_all(Source::Fd(fd.as_fd())).map_err(|e| self.error("read xattrs of", e))?;
        if self.overlay_attrs(&mut xattrs)?.whiteout {
            self.whiteout(&now)?;
            return Ok(false);
        }
        let size = u64::try_from(now.st_size).unwrap_or(0);
        self.tar
            .header(&Header {
                kind: Kind::File,
                size,
                xattrs: &xattrs,
                ..base(&self.name, self.clamp, &now)
            })
            .map_err(|e| self.write_error(e))?;
        self.entries += 1;
        let f = File::from(fd);
        match self.tar.content(&f, size, &mut self.buf) {
            Ok(()) => {}
            Err(Failed::Read(e)) => return Err(Error::io("read", self.host(), e)),
            Err(Failed::Write(e)) => return Err(self.write_error(e)),
        }
        Ok(true)
    }

    fn directory(&mut self, dir: BorrowedFd<'_>, n: &CStr, st: &FileStat) -> Result<()> {
        let fd = openat(
            dir,
            n,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.error("open", e))?;
        let mut child = Dir::from_fd(fd).map_err(|e| self.error("open", e))?;
        let mut xattrs = xattr::read_all(Source::Fd(child.as_fd()))
            .map_err(|e| self.error("read xattrs of", e))?;
        let o = self.overlay_attrs(&mut xattrs)?;
        self.name.push(b'/');
        self.tar
            .header(&Header {
                kind: Kind::Dir,
                xattrs: &xattrs,
                ..base(&self.name, self.clamp, st)
            })
            .map_err(|e| self.write_error(e))?;
        self.entries += 1;
        if o.opaque {
            let len = self.name.len();
            self.name.extend_from_slice(OPAQUE_MARKER);
            let r = self.tar.header(&Header {
                kind: Kind::File,
                mode: st.st_mode & 0o777,
                ..base(&self.name, self.clamp, st)
            });
            self.name.truncate(len);
            r.map_err(|e| self.write_error(e))?;
            self.entries += 1;
        }
        self.dir(&mut child)
    }

    /// `.wh.NAME` for the whiteout at the current name, owned as the
    /// device was, mode 0600 as docker writes them.
    fn whiteout(&mut self, st: &FileStat) -> Result<()> {
        let cut = self
            .name
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
        let mut name = self.name[..cut].to_vec();
        name.extend_from_slice(b".wh.");
        name.extend_from_slice(&self.name[cut..]);
        self.tar
            .header(&Header {
                name: &name,
                kind: Kind::File,
                mode: 0o600,
                ..base(&self.name, self.clamp, st)
            })
            .map_err(|e| self.write_error(e))?;
        self.entries += 1;
        Ok(())
    }

    /// Drops overlayfs's own xattrs (`trusted.overlay.*`, and
    /// `user.overlay.*` of a `userxattr` mount, which unpacking refuses to
    /// set anyway) and says what they meant. A redirect (a directory
    /// renamed) or a metacopy (a copy-up of metadata without the data)
    /// cannot be written as a layer and is refused.
    fn overlay_attrs(&self, xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<Overlay> {
        let mut o = Overlay::default();
        for (k, v) in xattrs.iter() {
            let Some(what) = k.strip_prefix(b"trusted.overlay.") else {
                continue;
            };
            match what {
                // "y"; "x" marks a lower dir holding xattr whiteouts.
                b"opaque" => o.opaque = v.as_slice() == b"y",
                // overlayfs's other whiteout form: a file with this xattr.
                b"whiteout" => o.whiteout = true,
                b"redirect" | b"metacopy" => {
                    return Err(Error::Unsupported(format!(
                        "{}: {}: made by an overlay mounted with redirect_dir or metacopy on; \
                         mount build steps with redirect_dir=off,metacopy=off",
                        self.host().display(),
                        String::from_utf8_lossy(k)
                    )))
                }
                _ => {}
            }
        }
        xattrs.retain(|(k, _)| {
            !k.starts_with(b"trusted.overlay.") && !k.starts_with(b"user.overlay.")
        });
        Ok(o)
    }

    /// The current entry on the host.
    fn host(&self) -> PathBuf {
        let n = self.name.strip_suffix(b"/").unwrap_or(&self.name);
        self.root.join(OsStr::from_bytes(n))
    }

    fn error(&self, op: &'static str, e: Errno) -> Error {
        Error::io(op, self.host(), e.into())
    }

    fn write_error(&self, e: io::Error) -> Error {
        Error::io("write the layer of", self.root, e)
    }
}

/// The header fields every entry takes from its stat, named `name`, the
/// mtime clamped to `clamp`.
fn base<'n>(name: &'n [u8], clamp: Option<i64>, st: &FileStat) -> Header<'n> {
    let mtime = match clamp {
        Some(c) if st.st_mtime > c => c,
        _ => st.st_mtime,
    };
    Header {
        name,
        kind: Kind::File,
        mode: st.st_mode & 0o7777,
        uid: u64::from(st.st_uid),
        gid: u64::from(st.st_gid),
        size: 0,
        mtime,
        link: b"",
        dev: (0, 0),
        xattrs: &[],
    }
}
