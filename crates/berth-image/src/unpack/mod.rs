//! Layer unpacking (image-spec "Image Layer Filesystem Changeset"): a
//! layer's tar stream applied onto a directory, every entry type with its
//! owner, mode, times and xattrs, and its whiteouts either applied (flat:
//! one directory holds the whole image, as `umoci unpack` gives) or turned
//! into overlayfs's form (each layer a lower directory of its own).
//!
//! Confinement, the point of this module: a name is first normalised and
//! clamped at the root (`../x`, `/x` and `a/../../x` all land at `x`:
//! confined, not refused, as umoci does), then its parent is resolved with
//! openat2(RESOLVE_IN_ROOT), so a symlink from this layer or a lower one
//! (`evil -> /etc`, `up -> ../../..`) resolves inside the root as it would
//! in the container. The entry itself is made relative to its parent's
//! descriptor and never followed at the last component. A hardlink's
//! target is resolved the same way, so it can only name a file inside the
//! root. Whiteouts are entries like any other and are confined alike.
//! Refused (with [`Error::Entry`], naming the entry) is only what cannot
//! be made: a hardlink to a directory, to the root or to nothing, a parent
//! that is a file or a symlink loop, a malformed header.

mod path;
mod root;
mod sys;
mod whiteout;

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode as Perm,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};

use crate::digest::Digest;
use crate::error::{Error, Result};
use path::EntryPath;
use root::{dir_open_flags, is_type, is_whiteout_device, lstat_at, remove_all, Root};

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (possibly several members, as pigz writes).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression a layer media type names (OCI and Docker schema 2,
    /// distributable or not). Encrypted or unknown types are
    /// [`Error::Unsupported`], naming the type.
    pub fn from_media_type(mt: &str) -> Result<Compression> {
        Ok(match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            _ => return Err(Error::Unsupported(format!("layer media type {mt:?}"))),
        })
    }

    /// The compression the first bytes of a blob show (a `docker save`
    /// archive names none): gzip's and zstd's magic numbers, else none.
    pub fn sniff(first_bytes: &[u8]) -> Compression {
        match first_bytes {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            // A zstd skippable frame (0x184D2A50..=0x184D2A5F, little end).
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// What the unpacked directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The image's merged root file system: layers are applied in order
    /// onto the same directory and whiteouts delete.
    Flat,
    /// One layer's own directory, to be an overlayfs lower directory:
    /// whiteouts become 0/0 character devices and opaque directories carry
    /// `trusted.overlay.opaque=y`.
    Overlay,
}

/// What one (or several, added up) layers held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tar entries read, whiteouts included.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Whiteouts applied (flat) or converted (overlay).
    pub whiteouts: u64,
    /// Entries not created: device nodes the kernel refused (no
    /// CAP_MKNOD, as in a user namespace), unknown entry types, entries
    /// inside a whiteout-named directory, non-directories naming the root.
    pub skipped: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.whiteouts += o.whiteouts;
        self.skipped += o.skipped;
    }
}

/// One layer's unpacking as it goes, for progress bars. Reported by the
/// `_with_progress` forms of [`crate::rootfs::unpack_flat`],
/// [`crate::rootfs::layer_dirs`], [`crate::rootfs::prepare`] and
/// [`crate::store::Store::layer_dir`], for each layer they unpack (a layer
/// already unpacked in the store reports nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The layer blob.
    pub digest: Digest,
    /// Bytes of the blob (compressed, as stored) read so far.
    pub done: u64,
    /// The blob's size.
    pub total: u64,
    /// Where the unpack is.
    pub event: Event,
}

/// The stages of one layer's unpacking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The unpack begins (`done` is 0).
    Start,
    /// More of the blob was read. Reported at most once per
    /// [`REPORT_EVERY`] bytes, so a callback costs nothing measurable.
    Bytes,
    /// The layer is unpacked (and, for the store's layers, its diff-id
    /// verified); what it held.
    Done(Stats),
}

/// How many blob bytes pass between two [`Event::Bytes`] reports.
pub const REPORT_EVERY: u64 = 1 << 20;

/// A layer blob's reader that reports how much of it has been read: the
/// bytes the decompressor (or the tar reader) consumed, which is how far
/// the unpack has come.
pub(crate) struct BlobProgress<'a, R> {
    inner: R,
    digest: &'a Digest,
    total: u64,
    done: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(Progress),
}

impl<'a, R: Read> BlobProgress<'a, R> {
    /// Wraps `inner`, the blob `digest` of `total` bytes, and reports the
    /// start.
    pub(crate) fn start(
        inner: R,
        digest: &'a Digest,
        total: u64,
        progress: &'a mut dyn FnMut(Progress),
    ) -> Self {
        let mut p = BlobProgress {
            inner,
            digest,
            total,
            done: 0,
            reported: 0,
            progress,
        };
        p.report(Event::Start);
        p
    }

    /// Reports the end, with what the layer held.
    pub(crate) fn finish(mut self, stats: Stats) {
        self.report(Event::Done(stats));
    }

    fn report(&mut self, event: Event) {
        self.reported = self.done;
        (self.progress)(Progress {
            digest: self.digest.clone(),
            done: self.done,
            total: self.total,
            event,
        });
    }
}

impl<R: Read> Read for BlobProgress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= REPORT_EVERY {
            self.report(Event::Bytes);
        }
        Ok(n)
    }
}

/// Applies one layer (a tar stream, compressed as given) onto `root`, an
/// existing directory.
///
/// Flat: whiteouts delete what earlier layers put in `root` (`.wh.NAME`
/// removes NAME; `.wh..wh..opq` empties its directory of everything that
/// was there before this layer, keeping what this layer adds wherever its
/// entries come in the tar). Overlay: `root` is a fresh, empty directory
/// for this layer alone; `.wh.NAME` becomes a 0/0 character device NAME
/// and an opaque directory gets `trusted.overlay.opaque=y`.
///
/// Entries keep their owner (the caller runs as root), mode (setuid, setgid and
/// sticky included: set after the owner, which clears them), mtime and
/// `SCHILY.xattr.*` xattrs. An xattr the file system or kernel refuses
/// (ENOTSUP, EPERM, ...: `user.*` on a symlink, `trusted.*` without
/// CAP_SYS_ADMIN) is skipped with a warning; `trusted.overlay.*` and
/// `user.overlay.*` from the archive are always skipped, so a layer cannot
/// forge overlayfs metadata. Existing directories are kept (their metadata
/// updated); anything else in an entry's way is removed first. The root's
/// own entry (`./`) is skipped: the root's metadata is the caller's.
///
/// The whole stream is read, including what follows the tar's end, so a
/// caller hashing it sees every byte and the compression's own checksum is
/// verified. `layer` labels errors (a digest or file name).
pub fn apply_layer(
    reader: impl Read,
    compression: Compression,
    root: &Path,
    mode: Mode,
    layer: &str,
) -> Result<Stats> {
    let u = Unpacker::new(root, mode, layer)?;
    match compression {
        Compression::None => u.run(reader),
        Compression::Gzip => u.run(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(reader).map_err(|e| stream_error(layer, e))?;
            u.run(d)
        }
    }
}

/// Between the decompressor and the tar reader, and for copying file
/// content: large enough that big files go in few system calls.
const BUF_SIZE: usize = 1 << 20;

/// The kind of file an entry makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    /// The kind of `h`'s entry (named `raw`); `None` for types not unpacked.
    fn of(h: &tar::Header, raw: &[u8]) -> Option<Kind> {
        let t = h.entry_type();
        Some(if t.is_dir() {
            Kind::Dir
        } else if t.is_file() || t.is_contiguous() || t.is_gnu_sparse() {
            // Pre-POSIX archives mark directories by a trailing slash on a
            // type '\0' entry (Go's archive/tar reads them the same way).
            if h.as_old().linkflag[0] == 0 && raw.ends_with(b"/") {
                Kind::Dir
            } else {
                Kind::File
            }
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_hard_link() {
            Kind::Hardlink
        } else if t.is_character_special() {
            Kind::Char
        } else if t.is_block_special() {
            Kind::Block
        } else if t.is_fifo() {
            Kind::Fifo
        } else {
            return None;
        })
    }
}

/// An entry's metadata.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
}

/// The state of one layer's unpack; buffers are reused from entry to entry.
struct Unpacker<'a> {
    root: Root,
    mode: Mode,
    layer: &'a str,
    stats: Stats,
    /// The current entry's name as in the archive (for messages).
    raw: Vec<u8>,
    /// The current entry's name, normalised.
    path: EntryPath,
    /// A second name: a hardlink's target, a whiteout's hidden sibling.
    link: EntryPath,
    /// A symlink's target with its NUL.
    target: Vec<u8>,
    /// File content on its way to disk.
    buf: Vec<u8>,
    /// The current entry's xattrs.
    xattrs: Vec<(CString, Vec<u8>)>,
    /// Flat: every name this layer wrote and their ancestors, so that its
    /// whiteouts only hide what lower layers put there.
    ours: HashSet<Box<[u8]>>,
    /// Directories' mtimes, set once nothing more is written in them.
    dir_times: Vec<(CString, TimeSpec)>,
}

impl<'a> Unpacker<'a> {
    fn new(root: &Path, mode: Mode, layer: &'a str) -> Result<Unpacker<'a>> {
        let root = Root::open(root, mode == Mode::Overlay)
            .map_err(|e| Error::io("open", root, e.into()))?;
        Ok(Unpacker {
            root,
            mode,
            layer,
            stats: Stats::default(),
            raw: Vec::new(),
            path: EntryPath::default(),
            link: EntryPath::default(),
            target: Vec::new(),
            buf: vec![0; BUF_SIZE],
            xattrs: Vec::new(),
            ours: HashSet::new(),
            dir_times: Vec::new(),
        })
    }

    fn run<R: Read>(mut self, r: R) -> Result<Stats> {
        let mut archive = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, r));
        for e in archive.entries().map_err(|e| stream_error(self.layer, e))? {
            let mut e = e.map_err(|e| stream_error(self.layer, e))?;
            self.entry(&mut e)?;
        }
        // Past the tar's end: padding, and the compression's trailer with
        // its checksum.
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map_err(|e| stream_error(self.layer, e))?;
        self.set_dir_times()?;
        Ok(self.stats)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        if e.header().entry_type().is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        self.raw.clear();
        self.raw.extend_from_slice(&e.path_bytes());
        if self.path.set(&self.raw).is_err() {
            return Err(self.refuse("name contains a NUL byte"));
        }
        let Some(kind) = Kind::of(e.header(), &self.raw) else {
            return self.skip("an entry type that is not unpacked");
        };
        if self.path.is_root() {
            if kind == Kind::Dir {
                // `./`, as `tar -C dir .` writes: the root is the caller's.
                return Ok(());
            }
            return self.skip("a non-directory naming the root");
        }
        if self.path.name_bytes().starts_with(whiteout::PREFIX) {
            return self.whiteout();
        }
        if self.path.parent_has_prefix(whiteout::PREFIX) {
            return self.skip("inside a directory named as a whiteout");
        }
        let meta = self.meta(e)?;
        if self.mode == Mode::Flat {
            self.record();
        }
        match kind {
            Kind::File => self.file(e, &meta),
            Kind::Dir => self.dir(&meta),
            Kind::Symlink => self.symlink(e, &meta),
            Kind::Hardlink => self.hardlink(e),
            Kind::Char | Kind::Block | Kind::Fifo => self.node(e, kind, &meta),
        }
    }

    /// Reads the owner, mode and mtime from the header, and the xattrs
    /// and precise mtime from PAX records.
    fn meta<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let h = e.header();
        let field = |what: &str, v: io::Result<u64>, raw: &[u8]| -> Result<u64> {
            numeric(v, raw).map_err(|err| self.refuse(&format!("bad {what} field: {err}")))
        };
        let old = h.as_old();
        let mode = field("mode", h.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
        let uid = field("uid", h.uid(), &old.uid)?;
        let gid = field("gid", h.gid(), &old.gid)?;
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(self.refuse(&format!("owner {uid}:{gid} out of range")));
        };
        let secs = field("mtime", h.mtime(), &old.mtime)?;
        let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        self.xattrs.clear();
        let layer = self.layer;
        if let Some(exts) = e.pax_extensions().map_err(|err| stream_error(layer, err))? {
            for ext in exts {
                let ext = ext.map_err(|err| stream_error(layer, err))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if let Ok(name) = CString::new(name) {
                        self.xattrs.push((name, ext.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
        })
    }

    /// Flat: notes that this layer wrote the current name.
    fn record(&mut self) {
        let p = self.path.as_bytes();
        if self.ours.contains(p) {
            return;
        }
        self.ours.insert(p.into());
        for a in path::ancestors(p) {
            if self.ours.contains(a) {
                break;
            }
            self.ours.insert(a.into());
        }
    }

    /// The current entry's parent directory, made if missing.
    fn parent(&mut self) -> Result<Rc<OwnedFd>> {
        self.root
            .parent_of(&mut self.path, true)
            .map_err(|e| self.parent_error(e))
    }

    /// Removes what is in the way of the current entry.
    fn clear_way(&mut self, parent: &OwnedFd) -> Result<()> {
        self.root.forget();
        remove_all(parent.as_fd(), self.path.name())
            .map_err(|e| self.io_error("remove", self.path.as_bytes(), e))
    }

    fn file<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, meta: &Meta) -> Result<()> {
        let parent = self.parent()?;
        // Always a new inode: truncating an existing file would also change
        // the lower layer's hardlinks to it.
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let perm = Perm::from_bits_truncate(0o600);
        let mut r = openat(parent.as_fd(), self.path.name(), flags, perm);
        if matches!(r, Err(Errno::EEXIST)) {
            self.clear_way(&parent)?;
            r = openat(parent.as_fd(), self.path.name(), flags, perm);
        }
        let mut file = File::from(r.map_err(|e| self.io_error("create", self.path.as_bytes(), e))?);
        let mut written = 0u64;
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(stream_error(self.layer, err)),
            };
            if let Err(err) = file.write_all(&self.buf[..n]) {
                return Err(Error::io(
                    "write",
                    self.root.host_path(self.path.as_bytes()),
                    err,
                ));
            }
            written += n as u64;
        }
        if written < e.size() {
            return Err(self.refuse(&format!("truncated: {written} of {} bytes", e.size())));
        }
        self.stats.bytes += written;
        self.set_meta_fd(file.as_fd(), meta)?;
        futimens(file.as_fd(), &meta.mtime, &meta.mtime)
            .map_err(|e| self.io_error("set times of", self.path.as_bytes(), e))
    }

    fn dir(&mut self, meta: &Meta) -> Result<()> {
        let parent = self.parent()?;
        let perm = Perm::from_bits_truncate(0o700);
        let mut opaque = false;
        match mkdirat(parent.as_fd(), self.path.name(), perm) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = lstat_at(parent.as_fd(), self.path.name())
                    .map_err(|e| self.io_error("stat", self.path.as_bytes(), e))?;
                if !st.is_some_and(|st| is_type(&st, SFlag::S_IFDIR)) {
                    // Overlay: this layer whited the name out earlier, so
                    // the lower layers' directory stays hidden under ours.
                    opaque =
                        self.mode == Mode::Overlay && st.is_some_and(|st| is_whiteout_device(&st));
                    self.clear_way(&parent)?;
                    mkdirat(parent.as_fd(), self.path.name(), perm)
                        .map_err(|e| self.io_error("mkdir", self.path.as_bytes(), e))?;
                }
            }
            Err(e) => return Err(self.io_error("mkdir", self.path.as_bytes(), e)),
        }
        let fd = openat(
            parent.as_fd(),
            self.path.name(),
            dir_open_flags(),
            Perm::empty(),
        )
        .map_err(|e| self.io_error("open", self.path.as_bytes(), e))?;
        self.set_meta_fd(fd.as_fd(), meta)?;
        if opaque {
            sys::fsetxattr(fd.as_fd(), whiteout::OVERLAY_OPAQUE, b"y").map_err(|e| {
                self.io_error("set trusted.overlay.opaque on", self.path.as_bytes(), e)
            })?;
        }
        self.dir_times
            .push((self.path.as_cstr().to_owned(), meta.mtime));
        self.root.remember(self.path.as_bytes(), fd);
        Ok(())
    }

    fn symlink<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, meta: &Meta) -> Result<()> {
        self.target.clear();
        match e.link_name_bytes() {
            Some(t) if !t.is_empty() && !t.contains(&0) => self.target.extend_from_slice(&t),
            _ => return Err(self.refuse("symlink without a valid target")),
        }
        self.target.push(0);
        let parent = self.parent()?;
        let target = CStr::from_bytes_with_nul(&self.target).unwrap_or(c".");
        let mut r = symlinkat(target, parent.as_fd(), self.path.name());
        if r == Err(Errno::EEXIST) {
            self.clear_way(&parent)?;
            let target = CStr::from_bytes_with_nul(&self.target).unwrap_or(c".");
            r = symlinkat(target, parent.as_fd(), self.path.name());
        }
        r.map_err(|e| self.io_error("symlink", self.path.as_bytes(), e))?;
        self.set_owner_at(parent.as_fd(), meta)?;
        self.set_xattrs(|n, v| sys::lsetxattr_at(parent.as_fd(), self.path.name(), n, v))?;
        self.set_times_at(parent.as_fd(), meta)
    }

    fn hardlink<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let Some(t) = e.link_name_bytes() else {
            return Err(self.refuse("hardlink without a target"));
        };
        if self.link.set(&t).is_err() {
            return Err(self.refuse("hardlink target contains a NUL byte"));
        }
        let shown = String::from_utf8_lossy(self.link.as_bytes()).into_owned();
        if self.link.is_root() {
            return Err(self.refuse("hardlink to the root directory"));
        }
        if self.link.as_bytes() == self.path.as_bytes() {
            return Ok(());
        }
        let missing = || format!("hardlink target {shown:?} does not exist in the root");
        let from = match self
            .root
            .open_in_root(self.link.parent_cstr(), OFlag::O_PATH | OFlag::O_DIRECTORY)
        {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                return Err(self.refuse(&missing()))
            }
            Err(e) => return Err(self.io_error("resolve", self.link.parent_bytes(), e)),
        };
        let parent = self.parent()?;
        let link = |this: &Self| {
            linkat(
                from.as_fd(),
                this.link.name(),
                parent.as_fd(),
                this.path.name(),
                AtFlags::empty(),
            )
        };
        let mut r = link(self);
        if r == Err(Errno::EEXIST) {
            self.clear_way(&parent)?;
            r = link(self);
        }
        match r {
            Ok(()) => Ok(()),
            Err(Errno::ENOENT) => Err(self.refuse(&missing())),
            Err(Errno::EPERM) => {
                Err(self.refuse(&format!("hardlink target {shown:?} is a directory")))
            }
            Err(e) => Err(self.io_error("link", self.path.as_bytes(), e)),
        }
    }

    /// A character or block device or a fifo.
    fn node<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, kind: Kind, meta: &Meta) -> Result<()> {
        let h = e.header();
        let (major, minor) = match (h.as_ustar(), h.as_gnu()) {
            (Some(u), _) => (&u.dev_major[..], &u.dev_minor[..]),
            (_, Some(g)) => (&g.dev_major[..], &g.dev_minor[..]),
            _ => (&[][..], &[][..]),
        };
        let num = |v: io::Result<Option<u32>>, raw: &[u8]| {
            numeric(v.map(|n| u64::from(n.unwrap_or(0))), raw)
                .map_err(|err| self.refuse(&format!("bad device number: {err}")))
        };
        // A fifo's device fields are often left empty.
        let dev = if kind == Kind::Fifo {
            0
        } else {
            makedev(num(h.device_major(), major)?, num(h.device_minor(), minor)?)
        };
        let sflag = match kind {
            Kind::Char => SFlag::S_IFCHR,
            Kind::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let parent = self.parent()?;
        let perm = Perm::from_bits_truncate(0o600);
        let mut r = mknodat(parent.as_fd(), self.path.name(), sflag, perm, dev);
        if r == Err(Errno::EEXIST) {
            self.clear_way(&parent)?;
            r = mknodat(parent.as_fd(), self.path.name(), sflag, perm, dev);
        }
        match r {
            Ok(()) => {}
            Err(Errno::EPERM) if kind != Kind::Fifo => {
                return self.skip("the kernel refuses to create device nodes here (EPERM)");
            }
            Err(e) => return Err(self.io_error("mknod", self.path.as_bytes(), e)),
        }
        self.set_owner_at(parent.as_fd(), meta)?;
        self.set_xattrs(|n, v| sys::lsetxattr_at(parent.as_fd(), self.path.name(), n, v))?;
        // Following is harmless here: the name was just made, as a node.
        fchmodat(
            parent.as_fd(),
            self.path.name(),
            Perm::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| self.io_error("chmod", self.path.as_bytes(), e))?;
        self.set_times_at(parent.as_fd(), meta)
    }

    /// Owner, xattrs, then mode (chown clears setuid and setgid; writing
    /// would clear file capabilities, so xattrs follow the content).
    fn set_meta_fd(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<()> {
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| self.io_error("chown", self.path.as_bytes(), e))?;
        self.set_xattrs(|n, v| sys::fsetxattr(fd, n, v))?;
        fchmod(fd, Perm::from_bits_truncate(meta.mode))
            .map_err(|e| self.io_error("chmod", self.path.as_bytes(), e))
    }

    fn set_owner_at(&self, parent: BorrowedFd<'_>, meta: &Meta) -> Result<()> {
        fchownat(
            parent,
            self.path.name(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_error("chown", self.path.as_bytes(), e))
    }

    fn set_times_at(&self, parent: BorrowedFd<'_>, meta: &Meta) -> Result<()> {
        utimensat(
            parent,
            self.path.name(),
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io_error("set times of", self.path.as_bytes(), e))
    }

    /// Sets the entry's xattrs with `set`, skipping overlayfs's own and
    /// warning about those the file system or kernel refuses.
    fn set_xattrs(&self, mut set: impl FnMut(&CStr, &[u8]) -> nix::Result<()>) -> Result<()> {
        for (name, value) in &self.xattrs {
            let n = name.to_bytes();
            if n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.") {
                tracing::warn!(layer = self.layer, entry = %self.entry_name(), xattr = %name.to_string_lossy(),
                    "skipping an overlayfs xattr from the archive");
                continue;
            }
            match set(name, value) {
                Ok(()) => {}
                Err(
                    e @ (Errno::ENOTSUP
                    | Errno::EPERM
                    | Errno::EACCES
                    | Errno::E2BIG
                    | Errno::ERANGE
                    | Errno::EINVAL),
                ) => {
                    tracing::warn!(layer = self.layer, entry = %self.entry_name(), xattr = %name.to_string_lossy(),
                        error = %e, "xattr not set");
                }
                Err(e) => return Err(self.io_error("set xattr on", self.path.as_bytes(), e)),
            }
        }
        Ok(())
    }

    /// Directories' mtimes, last: creating their entries changed them.
    fn set_dir_times(&mut self) -> Result<()> {
        for (name, t) in std::mem::take(&mut self.dir_times) {
            let fd = match self.root.open_in_root(&name, dir_open_flags()) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(self.io_error("open", name.to_bytes(), e)),
            };
            futimens(fd.as_fd(), &t, &t)
                .map_err(|e| self.io_error("set times of", name.to_bytes(), e))?;
        }
        Ok(())
    }

    fn skip(&mut self, why: &str) -> Result<()> {
        tracing::warn!(layer = self.layer, entry = %self.entry_name(), "skipping entry: {why}");
        self.stats.skipped += 1;
        Ok(())
    }

    /// The current entry's name as in the archive.
    fn entry_name(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// An [`Error::Entry`] for the current entry.
    fn refuse(&self, msg: &str) -> Error {
        Error::Entry {
            layer: self.layer.to_string(),
            entry: self.entry_name(),
            msg: msg.to_string(),
        }
    }

    /// An [`Error::Io`] naming `name` under the root.
    fn io_error(&self, op: &'static str, name: &[u8], e: Errno) -> Error {
        Error::io(op, self.root.host_path(name), e.into())
    }

    /// Why the current entry's parent could not be had.
    fn parent_error(&self, e: Errno) -> Error {
        match e {
            Errno::ENOTDIR => self.refuse("a parent directory is not a directory"),
            Errno::ELOOP => self.refuse("too many levels of symlinks in the parent directories"),
            Errno::EINVAL => self.refuse("a parent directory would be named as a whiteout"),
            e => self.io_error("create parent directories of", self.path.as_bytes(), e),
        }
    }
}

/// An error reading the layer: a malformed stream is a format error, a
/// failing reader an I/O error.
fn stream_error(layer: &str, e: io::Error) -> Error {
    use io::ErrorKind::*;
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof | Other => Error::format(
            format!("layer {layer}"),
            format!("reading the tar stream: {e}"),
        ),
        _ => Error::io("read layer", layer, e),
    }
}

/// A numeric header field as the tar crate parsed it, except that a field
/// left empty (only NULs and spaces, as some writers leave uid and gid)
/// reads as 0, the way Go's archive/tar, and so Docker and umoci, read it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        r => r,
    }
}

/// A PAX time, `SECONDS[.FRACTION]` (possibly negative).
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let v = std::str::from_utf8(v).ok()?;
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, _) => TimeSpec::new(secs, nanos),
        (true, 0) => TimeSpec::new(-secs, 0),
        (true, _) => TimeSpec::new(-secs - 1, 1_000_000_000 - nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Zstd,
            ),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Gzip,
            ),
        ] {
            assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
        }
        let e =
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
                .unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)));
        assert!(e.to_string().contains("tar+gzip+encrypted"), "{e}");
    }

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::sniff(&[0x5e, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0\0\0"), Compression::None);
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn empty_numeric_fields_read_as_zero() {
        let bad = || Err(io::Error::other("not a number"));
        assert_eq!(numeric(bad(), &[0; 8]).unwrap(), 0);
        assert_eq!(numeric(bad(), b"       \0").unwrap(), 0);
        assert!(numeric(bad(), b"12x4567\0").is_err());
        assert_eq!(numeric(Ok(7), b"0000007\0").unwrap(), 7);
    }

    #[test]
    fn parses_pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(".5"), None);
        assert_eq!(t("1.x"), None);
    }

    #[test]
    fn stats_add_up() {
        let mut s = Stats {
            entries: 1,
            bytes: 2,
            whiteouts: 3,
            skipped: 4,
        };
        s += s;
        assert_eq!(
            s,
            Stats {
                entries: 2,
                bytes: 4,
                whiteouts: 6,
                skipped: 8
            }
        );
    }
}
