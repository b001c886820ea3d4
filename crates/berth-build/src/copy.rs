//! COPY and ADD: Docker's file semantics (sources relative to the context
//! or to another stage's root, globs, `.dockerignore`, directory contents,
//! the destination rule, ownership, modes, times, links) carried out
//! against a root that may be hostile.
//!
//! Confinement, the point of this module: the root written into is an
//! image's file system, whose symlinks (`app -> /etc`, `up -> ../../..`)
//! must resolve as they would inside the container. Every lookup in it goes
//! through openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), missing
//! directories are made one component at a time without following the
//! component just made, and entries are created relative to their parent's
//! descriptor with O_NOFOLLOW / O_EXCL (an existing non-directory is
//! unlinked first, never written through). Sources are read the same way:
//! a source path resolves inside its root, and a copied tree is walked with
//! `*at` calls that never follow a symlink.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use berth_image::unpack::{apply_layer, Compression, Mode as UnpackMode};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::ignore::{clean_path, glob_is_valid, glob_match, DockerIgnore};

/// Symlinks followed while resolving one destination, as the kernel's own
/// limit (MAXSYMLINKS).
const MAX_LINKS: u32 = 40;

/// Where COPY/ADD sources come from.
pub enum From<'a> {
    /// The build context, with its `.dockerignore`.
    Context(&'a Context),
    /// Another stage's or image's root file system (`COPY --from`): paths
    /// resolve inside it as if it were `/`, nothing is ignored, and
    /// without --chown the files keep their owners.
    Root(&'a Path),
}

/// How a COPY or ADD writes what it copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `--chown`, resolved to ids; `None` is 0:0 for everything created
    /// from the context (ADD keeps an archive's own owners instead, and
    /// [`From::Root`] sources their owners).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: the mode of every copied file and directory.
    pub chmod: Option<u32>,
    /// ADD: local tar archives (plain, gzip, zstd) are extracted into the
    /// destination; remote sources are refused.
    pub add: bool,
}

/// What a copy wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Non-directory entries created (files, symlinks, hardlinks, nodes).
    pub files: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a COPY or ADD failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source that names nothing (or only what `.dockerignore` excludes).
    #[error("source {path:?}: not found")]
    NotFound {
        /// The source as written.
        path: String,
    },
    /// A system call failed on a path.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Something builds cannot do (remote sources, bzip2 or xz archives).
    #[error("{0}")]
    Unsupported(String),
    /// A path that would resolve outside its root; refused.
    #[error("{path}: resolves outside its root")]
    Escapes {
        /// The path, relative to its root.
        path: String,
    },
    /// Several sources, and a destination that is not a directory.
    #[error("When using COPY with more than one source file, the destination must be a directory and end with a / (destination {dest:?})")]
    NotADirectory {
        /// The destination as given.
        dest: String,
    },
    /// A source glob that Go's filepath.Match rejects.
    #[error("source {pattern:?}: malformed pattern")]
    BadPattern {
        /// The source as written.
        pattern: String,
    },
    /// A `.dockerignore` line that is not a valid pattern.
    #[error("{path}: invalid .dockerignore pattern {pattern:?}")]
    InvalidIgnore { path: PathBuf, pattern: String },
    /// An ADD archive that could not be extracted.
    #[error("ADD {path:?}: {source}")]
    Archive {
        /// The source as written.
        path: String,
        #[source]
        source: berth_image::Error,
    },
}

impl CopyError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> CopyError {
        CopyError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    fn sys(op: &'static str, path: impl Into<PathBuf>, e: Errno) -> CopyError {
        CopyError::io(op, path, io::Error::from(e))
    }
}

type Result<T> = std::result::Result<T, CopyError>;

/// Opens `path` below `dir` with `dir` as `/`; RESOLVE_IN_ROOT fails with
/// EAGAIN when a rename raced with the lookup, so a few tries are made.
fn open_in(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlag,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let path = if path.is_empty() { "." } else { path };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

fn in_root(root: BorrowedFd<'_>, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    open_in(root, path, flags, ResolveFlag::RESOLVE_IN_ROOT)
}

fn path_dir() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY
}

fn read_dir() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() || a == "." {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// A source or destination as a path relative to its root: cleaned as if
/// at `/` (so `..` cannot leave it), `.` for the root itself.
fn rel_of(p: &str) -> String {
    let c = clean_path(&format!("/{p}"));
    match c.strip_prefix('/') {
        Some("") | None => ".".to_string(),
        Some(r) => r.to_string(),
    }
}

/// Go's `filepath.Glob` treats a path with any of these as a pattern.
fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn cstring(b: &[u8], shown: &Path) -> Result<CString> {
    CString::new(b).map_err(|_| CopyError::sys("name", shown, Errno::EINVAL))
}

/// A file in a source tree, as found when the sources were listed.
struct Node {
    name: CString,
    st: FileStat,
    target: Option<CString>,
    children: Vec<Node>,
}

/// A source path that matched: its parent directory (resolved in the
/// source root) and what it holds.
struct Top {
    rel: String,
    parent: OwnedFd,
    node: Node,
}

/// The side sources are read from.
struct Source<'a> {
    fd: OwnedFd,
    host: PathBuf,
    ignore: Option<&'a DockerIgnore>,
}

impl<'a> Source<'a> {
    fn open(from: &From<'a>) -> Result<Source<'a>> {
        let (host, ignore) = match from {
            From::Context(c) => (c.root(), Some(c.ignore())),
            From::Root(p) => (*p, None),
        };
        Source::at(host, ignore)
    }

    fn at(host: &Path, ignore: Option<&'a DockerIgnore>) -> Result<Source<'a>> {
        let fd = nix::fcntl::open(host, path_dir() | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| CopyError::sys("open", host, e))?;
        Ok(Source {
            fd,
            host: host.to_path_buf(),
            ignore,
        })
    }

    fn host_path(&self, rel: &str) -> PathBuf {
        self.host.join(rel)
    }

    fn excluded(&self, rel: &str) -> bool {
        self.ignore.is_some_and(|i| i.is_excluded(rel))
    }

    /// The paths `source` names: itself, or what its glob matches (sorted
    /// per directory, as filepath.Glob gives them); `true` for a glob.
    fn expand(&self, source: &str) -> Result<(Vec<String>, bool)> {
        let rel = rel_of(source);
        if !has_meta(&rel) {
            return Ok((vec![rel], false));
        }
        let mut cands = vec![String::new()];
        for comp in rel.split('/') {
            if !has_meta(comp) {
                for c in &mut cands {
                    *c = join(c, comp);
                }
                continue;
            }
            if !glob_is_valid(comp) {
                return Err(CopyError::BadPattern {
                    pattern: source.to_string(),
                });
            }
            let mut next = Vec::new();
            for c in &cands {
                let Ok(fd) = in_root(self.fd.as_fd(), c, path_dir()) else {
                    continue;
                };
                for name in list(fd.as_fd(), &self.host_path(c))? {
                    let name = String::from_utf8_lossy(name.as_bytes()).into_owned();
                    if glob_match(comp, &name) {
                        next.push(join(c, &name));
                    }
                }
            }
            cands = next;
        }
        Ok((cands, true))
    }

    /// The tree at `rel`, or `None` when it does not exist or is hidden.
    fn top(&self, rel: &str) -> Result<Option<Top>> {
        let (parent_rel, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        let parent = match in_root(self.fd.as_fd(), parent_rel, path_dir()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(CopyError::sys("resolve", self.host_path(parent_rel), e)),
        };
        let name = cstring(name.as_bytes(), &self.host_path(rel))?;
        let node = self.collect(parent.as_fd(), name, rel)?;
        Ok(node.map(|node| Top {
            rel: rel.to_string(),
            parent,
            node,
        }))
    }

    /// Lists `parent`/`name` (context path `rel`) and everything below it
    /// without following symlinks; sockets and excluded paths are left out,
    /// and an excluded directory stays only for what a `!` re-includes.
    fn collect(&self, parent: BorrowedFd<'_>, name: CString, rel: &str) -> Result<Option<Node>> {
        let st = match fstatat(parent, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(CopyError::sys("stat", self.host_path(rel), e)),
        };
        let k = kind(&st);
        if k == SFlag::S_IFSOCK {
            return Ok(None);
        }
        let excluded = self.excluded(rel);
        if k != SFlag::S_IFDIR {
            if excluded {
                return Ok(None);
            }
            let target = if k == SFlag::S_IFLNK {
                let t = readlinkat(parent, name.as_c_str())
                    .map_err(|e| CopyError::sys("readlink", self.host_path(rel), e))?;
                Some(cstring(t.as_bytes(), &self.host_path(rel))?)
            } else {
                None
            };
            return Ok(Some(Node {
                name,
                st,
                target,
                children: Vec::new(),
            }));
        }
        if excluded && !self.ignore.is_some_and(|i| i.may_include_below(rel)) {
            return Ok(None);
        }
        let fd = openat(parent, name.as_c_str(), read_dir(), Mode::empty())
            .map_err(|e| CopyError::sys("open", self.host_path(rel), e))?;
        let mut children = Vec::new();
        for child in list(fd.as_fd(), &self.host_path(rel))? {
            let child_rel = join(rel, &String::from_utf8_lossy(child.as_bytes()));
            if let Some(n) = self.collect(fd.as_fd(), child, &child_rel)? {
                children.push(n);
            }
        }
        if excluded && children.is_empty() {
            return Ok(None);
        }
        Ok(Some(Node {
            name,
            st,
            target: None,
            children,
        }))
    }

    /// Every top-level tree `sources` name, in order; a source naming
    /// nothing visible is [`CopyError::NotFound`].
    fn tops(&self, sources: &[String]) -> Result<Vec<Top>> {
        let mut tops = Vec::new();
        for s in sources {
            let (paths, _) = self.expand(s)?;
            let before = tops.len();
            for rel in paths {
                if let Some(t) = self.top(&rel)? {
                    tops.push(t);
                }
            }
            if tops.len() == before {
                return Err(CopyError::NotFound { path: s.clone() });
            }
        }
        Ok(tops)
    }
}

/// The names in the directory `fd`, sorted bytewise.
fn list(fd: BorrowedFd<'_>, shown: &Path) -> Result<Vec<CString>> {
    let mut d = Dir::openat(fd, c".", read_dir(), Mode::empty())
        .map_err(|e| CopyError::sys("open", shown, e))?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| CopyError::sys("read directory", shown, e))?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn remote(s: &str) -> bool {
    ["http://", "https://", "git@", "git://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Copies `sources` (as written after variable expansion: relative to the
/// context root or to the --from root, a leading `/` ignored, globs
/// `* ? [..]` matched per path component like Go's filepath.Match) to
/// `dest` (absolute; a trailing `/` kept) inside `root`, the directory the
/// step writes into.
pub fn copy(
    from: &From,
    sources: &[String],
    dest: &str,
    root: &Path,
    o: &CopyOptions,
) -> Result<Stats> {
    check_remote(sources, o.add)?;
    let src = Source::open(from)?;
    let tops = src.tops(sources)?;
    let dst = Dest::open(root)?;
    let dest_rel = rel_of(dest);
    let trailing = dest.ends_with('/') || dest.ends_with("/.") || dest_rel == ".";
    if sources.len() > 1 && !trailing {
        return Err(CopyError::NotADirectory {
            dest: dest.to_string(),
        });
    }
    // A glob matching several is like several sources, except that an
    // existing directory will do without the slash.
    let dest_dir = trailing || dst.is_dir(&dest_rel);
    if tops.len() > 1 && !dest_dir {
        return Err(CopyError::NotADirectory {
            dest: dest.to_string(),
        });
    }
    let owner = o.chown.unwrap_or((0, 0));
    // Docker makes files from the build context 0:0; those of a stage or
    // an image (`--from`) keep their owners unless --chown says otherwise.
    let keep_owner = o.chown.is_none() && matches!(from, From::Root(_));
    let mut w = Writer {
        dst: &dst,
        o,
        keep_owner,
        source_id: 0,
        links: HashMap::new(),
        stats: Stats::default(),
    };
    for (i, top) in tops.iter().enumerate() {
        let k = kind(&top.node.st);
        if k == SFlag::S_IFDIR {
            let (fd, real) = dst.mkdir_all(&dest_rel, owner)?;
            let sfd = openat(
                top.parent.as_fd(),
                top.node.name.as_c_str(),
                read_dir(),
                Mode::empty(),
            )
            .map_err(|e| CopyError::sys("open", src.host_path(&top.rel), e))?;
            w.children(sfd.as_fd(), &top.node, fd.as_fd(), &real)?;
            continue;
        }
        if o.add && k == SFlag::S_IFREG {
            let f = open_file(top.parent.as_fd(), &top.node.name, &src.host_path(&top.rel))?;
            if let Some(c) = archive_kind(&f, &top.rel)? {
                let (fd, real) = dst.mkdir_all(&dest_rel, owner)?;
                w.source_id = i + 1;
                w.keep_owner = o.chown.is_none();
                extract(&f, c, &top.rel, &mut w, fd.as_fd(), &real)?;
                w.keep_owner = keep_owner;
                w.source_id = 0;
                continue;
            }
        }
        let (parent_rel, name) = if dest_dir {
            let base = top.rel.rsplit('/').next().unwrap_or(&top.rel);
            (dest_rel.clone(), base.to_string())
        } else {
            match dest_rel.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), dest_rel.clone()),
            }
        };
        let (fd, real) = dst.mkdir_all(&parent_rel, owner)?;
        let name = cstring(name.as_bytes(), &dst.host_path(&dest_rel))?;
        w.entry(top.parent.as_fd(), &top.node, fd.as_fd(), &real, &name)?;
    }
    Ok(w.stats)
}

/// Refuses URL sources: ADD would need the network to fetch them, and
/// COPY takes none.
pub fn check_remote(sources: &[String], add: bool) -> Result<()> {
    let Some(s) = sources.iter().find(|s| remote(s)) else {
        return Ok(());
    };
    Err(CopyError::Unsupported(if add {
        format!("ADD {s}: remote sources need network access, which builds do not have; download into the build context and COPY it")
    } else {
        format!("COPY {s}: source can't be a URL for COPY")
    }))
}

fn open_file(parent: BorrowedFd<'_>, name: &CStr, shown: &Path) -> Result<File> {
    let fd = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| CopyError::sys("open", shown, e))?;
    let st = fstat(fd.as_fd()).map_err(|e| CopyError::sys("stat", shown, e))?;
    if kind(&st) != SFlag::S_IFREG {
        // Swapped for something else since it was listed.
        return Err(CopyError::sys("open", shown, Errno::EINVAL));
    }
    Ok(fd.into())
}

/// Whether the tar header checksum of `b` (512 bytes) is right, which is
/// how Docker tells an archive from any other file.
fn is_tar_header(b: &[u8]) -> bool {
    if b.len() < 512 || b[..512].iter().all(|&x| x == 0) {
        return false;
    }
    let field = &b[148..156];
    let digits: String = field
        .iter()
        .map(|&c| c as char)
        .filter(|c| !matches!(c, ' ' | '\0'))
        .collect();
    let Ok(want) = i64::from_str_radix(&digits, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b[..512].iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    want == unsigned || want == signed
}

/// What kind of archive `f` (the source `name`) is, by content: `None`
/// when it is not a tar archive (it is then copied as it is).
fn archive_kind(f: &File, name: &str) -> Result<Option<Compression>> {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::io("read", name, e)),
        }
    }
    let head = &head[..n];
    let unsupported = |what: &str| {
        CopyError::Unsupported(format!(
            "ADD {name}: {what}-compressed archives are not supported; extract or recompress it (gzip, zstd) in the build context"
        ))
    };
    if head.len() >= 4 && head.starts_with(b"BZh") && head[3].is_ascii_digit() {
        return Err(unsupported("bzip2"));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(unsupported("xz"));
    }
    let c = Compression::sniff(head);
    let block = match c {
        Compression::None => head.to_vec(),
        Compression::Gzip | Compression::Zstd => {
            let mut r = f;
            r.seek(SeekFrom::Start(0))
                .map_err(|e| CopyError::io("seek", name, e))?;
            let mut out = Vec::with_capacity(512);
            let res = if c == Compression::Gzip {
                flate2::read::MultiGzDecoder::new(r)
                    .take(512)
                    .read_to_end(&mut out)
            } else {
                zstd::stream::read::Decoder::new(r).and_then(|d| d.take(512).read_to_end(&mut out))
            };
            // Not decodable: not an archive of ours, so a plain file.
            if res.is_err() {
                return Ok(None);
            }
            out
        }
    };
    Ok(is_tar_header(&block).then_some(c))
}

/// Extracts the archive `f` into a scratch directory, then copies that
/// tree into the destination directory `dfd` (at `real`).
fn extract(
    f: &File,
    c: Compression,
    name: &str,
    w: &mut Writer<'_>,
    dfd: BorrowedFd<'_>,
    real: &str,
) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("berth-add-")
        .tempdir()
        .map_err(|e| CopyError::io("create scratch directory for", name, e))?;
    let mut r = f;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| CopyError::io("seek", name, e))?;
    apply_layer(r, c, tmp.path(), UnpackMode::Flat, name).map_err(|e| CopyError::Archive {
        path: name.to_string(),
        source: e,
    })?;
    let src = Source::at(tmp.path(), None)?;
    let node = src
        .collect(src.fd.as_fd(), c".".to_owned(), ".")?
        .ok_or_else(|| CopyError::NotFound {
            path: name.to_string(),
        })?;
    let sfd = openat(src.fd.as_fd(), c".", read_dir(), Mode::empty())
        .map_err(|e| CopyError::sys("open", tmp.path(), e))?;
    w.children(sfd.as_fd(), &node, dfd, real)
}

/// The root a step writes into.
struct Dest {
    fd: OwnedFd,
    host: PathBuf,
}

impl Dest {
    fn open(root: &Path) -> Result<Dest> {
        let fd = nix::fcntl::open(root, path_dir() | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| CopyError::sys("open", root, e))?;
        Ok(Dest {
            fd,
            host: root.to_path_buf(),
        })
    }

    fn host_path(&self, rel: &str) -> PathBuf {
        self.host.join(rel)
    }

    /// Whether `rel` is a directory, symlinks resolved inside the root.
    fn is_dir(&self, rel: &str) -> bool {
        in_root(self.fd.as_fd(), rel, path_dir()).is_ok()
    }

    /// The directory `rel`, made (0755, owned by `owner`) where missing;
    /// symlinks on the way are read and re-rooted, never followed by the
    /// kernel outside the root. Returns its descriptor and its path from
    /// the root with every symlink resolved.
    fn mkdir_all(&self, rel: &str, owner: (u32, u32)) -> Result<(OwnedFd, String)> {
        let mut todo: VecDeque<Vec<u8>> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                stack.pop();
                names.pop();
                continue;
            }
            let here = join(&names.join("/"), &String::from_utf8_lossy(&c));
            let shown = self.host_path(&here);
            let cur = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
            let name = cstring(&c, &shown)?;
            match fstatat(cur, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if kind(&st) == SFlag::S_IFDIR => {}
                Ok(st) if kind(&st) == SFlag::S_IFLNK => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(CopyError::sys("resolve", shown, Errno::ELOOP));
                    }
                    let t = readlinkat(cur, name.as_c_str())
                        .map_err(|e| CopyError::sys("readlink", &shown, e))?;
                    let t = t.as_bytes();
                    if t.starts_with(b"/") {
                        stack.clear();
                        names.clear();
                    }
                    for part in t.split(|&b| b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                    continue;
                }
                Ok(_) => return Err(CopyError::sys("make directory", shown, Errno::ENOTDIR)),
                Err(Errno::ENOENT) => {
                    mkdirat(cur, name.as_c_str(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| CopyError::sys("make directory", &shown, e))?;
                    fchownat(
                        cur,
                        name.as_c_str(),
                        Some(Uid::from_raw(owner.0)),
                        Some(Gid::from_raw(owner.1)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| CopyError::sys("chown", &shown, e))?;
                    // The umask may have narrowed it; following is harmless
                    // here as the name was just made as a directory.
                    fchmodat(
                        cur,
                        name.as_c_str(),
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| CopyError::sys("chmod", &shown, e))?;
                }
                Err(e) => return Err(CopyError::sys("stat", shown, e)),
            }
            let fd = openat(
                cur,
                name.as_c_str(),
                path_dir() | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| CopyError::sys("open", &shown, e))?;
            stack.push(fd);
            names.push(String::from_utf8_lossy(&c).into_owned());
        }
        let fd = match stack.pop() {
            Some(fd) => fd,
            None => openat(
                self.fd.as_fd(),
                c".",
                path_dir() | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| CopyError::sys("open", &self.host, e))?,
        };
        Ok((fd, names.join("/")))
    }

    /// The directory `rel` (a path made of real directories, as
    /// [`Dest::mkdir_all`] returns), refusing any symlink on the way.
    fn real_dir(&self, rel: &str) -> Result<OwnedFd> {
        open_in(
            self.fd.as_fd(),
            rel,
            path_dir(),
            ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| match e {
            Errno::ELOOP | Errno::EXDEV => CopyError::Escapes {
                path: rel.to_string(),
            },
            e => CopyError::sys("open", self.host_path(rel), e),
        })
    }
}

/// Writes source trees into the destination.
struct Writer<'a> {
    dst: &'a Dest,
    o: &'a CopyOptions,
    /// ADD without --chown: entries keep the archive's owners.
    keep_owner: bool,
    /// Which source tree is being copied, so that inode numbers of
    /// different trees (a scratch directory's may be reused) never meet.
    source_id: usize,
    /// Files with several links already written: (tree, dev, ino) to their
    /// path from the root.
    links: HashMap<(usize, u64, u64), String>,
    stats: Stats,
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

impl Writer<'_> {
    fn owner(&self, st: &FileStat) -> (Uid, Gid) {
        let (u, g) = if self.keep_owner {
            (st.st_uid, st.st_gid)
        } else {
            self.o.chown.unwrap_or((0, 0))
        };
        (Uid::from_raw(u), Gid::from_raw(g))
    }

    fn mode(&self, st: &FileStat) -> Mode {
        Mode::from_bits_truncate(self.o.chmod.unwrap_or(st.st_mode) & 0o7777)
    }

    /// Copies the children of the directory `node` (open as `sfd`) into
    /// the destination directory `dfd`, at `real` from the root.
    fn children(
        &mut self,
        sfd: BorrowedFd<'_>,
        node: &Node,
        dfd: BorrowedFd<'_>,
        real: &str,
    ) -> Result<()> {
        for child in &node.children {
            self.entry(sfd, child, dfd, real, &child.name)?;
        }
        Ok(())
    }

    /// Makes `node` (named in the source directory `sparent`) as `name` in
    /// the destination directory `dparent`, at `dreal` from the root.
    fn entry(
        &mut self,
        sparent: BorrowedFd<'_>,
        node: &Node,
        dparent: BorrowedFd<'_>,
        dreal: &str,
        name: &CStr,
    ) -> Result<()> {
        let real = join(dreal, &String::from_utf8_lossy(name.to_bytes()));
        let shown = self.dst.host_path(&real);
        let st = &node.st;
        let k = kind(st);
        if k == SFlag::S_IFDIR {
            return self.dir(sparent, node, dparent, name, &real);
        }
        if st.st_nlink > 1 {
            let key = (self.source_id, st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let (fp, fname) = match first.rsplit_once('/') {
                    Some((p, n)) => (p.to_string(), n.to_string()),
                    None => (String::new(), first.clone()),
                };
                let from = self.dst.real_dir(&fp)?;
                let fname = cstring(fname.as_bytes(), &shown)?;
                clear_way(dparent, name, &shown)?;
                linkat(
                    from.as_fd(),
                    fname.as_c_str(),
                    dparent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| CopyError::sys("link", &shown, e))?;
                self.stats.files += 1;
                return Ok(());
            }
            self.links.insert(key, real.clone());
        }
        let (uid, gid) = self.owner(st);
        let (atime, mtime) = times(st);
        clear_way(dparent, name, &shown)?;
        if k == SFlag::S_IFREG {
            let mut input = open_file(sparent, &node.name, &shown)?;
            let fd = openat(
                dparent,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| CopyError::sys("create", &shown, e))?;
            let mut out: File = fd.into();
            let n =
                io::copy(&mut input, &mut out).map_err(|e| CopyError::io("write", &shown, e))?;
            self.stats.bytes += n;
            // The owner first: chown clears setuid and setgid.
            fchown(out.as_fd(), Some(uid), Some(gid))
                .map_err(|e| CopyError::sys("chown", &shown, e))?;
            fchmod(out.as_fd(), self.mode(st)).map_err(|e| CopyError::sys("chmod", &shown, e))?;
            futimens(out.as_fd(), &atime, &mtime)
                .map_err(|e| CopyError::sys("set times of", &shown, e))?;
        } else {
            if k == SFlag::S_IFLNK {
                let target = node.target.as_deref().unwrap_or(c".");
                symlinkat(target, dparent, name)
                    .map_err(|e| CopyError::sys("symlink", &shown, e))?;
            } else {
                mknodat(
                    dparent,
                    name,
                    k,
                    Mode::from_bits_truncate(0o600),
                    st.st_rdev,
                )
                .map_err(|e| CopyError::sys("mknod", &shown, e))?;
            }
            fchownat(
                dparent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| CopyError::sys("chown", &shown, e))?;
            if k != SFlag::S_IFLNK {
                // Following is harmless: the name was just made, as a node.
                fchmodat(dparent, name, self.mode(st), FchmodatFlags::FollowSymlink)
                    .map_err(|e| CopyError::sys("chmod", &shown, e))?;
            }
            utimensat(
                dparent,
                name,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| CopyError::sys("set times of", &shown, e))?;
        }
        self.stats.files += 1;
        Ok(())
    }

    fn dir(
        &mut self,
        sparent: BorrowedFd<'_>,
        node: &Node,
        dparent: BorrowedFd<'_>,
        name: &CStr,
        real: &str,
    ) -> Result<()> {
        let shown = self.dst.host_path(real);
        match mkdirat(dparent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(dparent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| CopyError::sys("stat", &shown, e))?;
                // An existing directory is merged into; anything else,
                // a symlink included, is replaced.
                if kind(&st) != SFlag::S_IFDIR {
                    unlinkat(dparent, name, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| CopyError::sys("remove", &shown, e))?;
                    mkdirat(dparent, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| CopyError::sys("make directory", &shown, e))?;
                }
            }
            Err(e) => return Err(CopyError::sys("make directory", &shown, e)),
        }
        let dfd = openat(dparent, name, read_dir(), Mode::empty())
            .map_err(|e| CopyError::sys("open", &shown, e))?;
        let (uid, gid) = self.owner(&node.st);
        fchown(dfd.as_fd(), Some(uid), Some(gid))
            .map_err(|e| CopyError::sys("chown", &shown, e))?;
        fchmod(dfd.as_fd(), self.mode(&node.st)).map_err(|e| CopyError::sys("chmod", &shown, e))?;
        let sfd = openat(sparent, node.name.as_c_str(), read_dir(), Mode::empty())
            .map_err(|e| CopyError::sys("open source of", &shown, e))?;
        self.children(sfd.as_fd(), node, dfd.as_fd(), real)?;
        // Last, as writing the children changed it.
        let (atime, mtime) = times(&node.st);
        futimens(dfd.as_fd(), &atime, &mtime).map_err(|e| CopyError::sys("set times of", &shown, e))
    }
}

/// Removes a non-directory at `dir`/`name` so a new entry can take its
/// place; a directory there cannot be replaced by a non-directory.
fn clear_way(dir: BorrowedFd<'_>, name: &CStr, shown: &Path) -> Result<()> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == SFlag::S_IFDIR => {
            Err(CopyError::sys("replace directory", shown, Errno::EISDIR))
        }
        Ok(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| CopyError::sys("remove", shown, e)),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(CopyError::sys("stat", shown, e)),
    }
}

/// A sha256 hex string over what [`copy`] would read for `sources`: each
/// path's relative name, type, permission bits, size, content hash and
/// symlink target or device number (no times, no owners), excluded paths
/// skipped; a source that matches nothing is an error as in [`copy`].
pub fn checksum(from: &From, sources: &[String]) -> Result<String> {
    let src = Source::open(from)?;
    let tops = src.tops(sources)?;
    let mut h = Sha256::new();
    for top in &tops {
        hash_node(&src, top.parent.as_fd(), &top.node, &top.rel, &mut h)?;
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hash_node(
    src: &Source<'_>,
    parent: BorrowedFd<'_>,
    node: &Node,
    rel: &str,
    h: &mut Sha256,
) -> Result<()> {
    let st = &node.st;
    let k = kind(st);
    let ty = match k {
        SFlag::S_IFDIR => 'd',
        SFlag::S_IFREG => 'f',
        SFlag::S_IFLNK => 'l',
        SFlag::S_IFIFO => 'p',
        SFlag::S_IFCHR => 'c',
        SFlag::S_IFBLK => 'b',
        _ => '?',
    };
    // Length-prefixed name, so no name can imitate a record boundary.
    h.update((rel.len() as u64).to_le_bytes());
    h.update(rel.as_bytes());
    let size = if k == SFlag::S_IFREG { st.st_size } else { 0 };
    h.update(format!("\0{ty}\0{:o}\0{size}\0", st.st_mode & 0o7777).as_bytes());
    match k {
        SFlag::S_IFREG => {
            let mut f = open_file(parent, &node.name, &src.host_path(rel))?;
            let mut fh = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CopyError::io("read", src.host_path(rel), e)),
                };
                fh.update(&buf[..n]);
            }
            h.update(fh.finalize());
        }
        SFlag::S_IFLNK => {
            let t = node.target.as_deref().unwrap_or(c"");
            h.update((t.to_bytes().len() as u64).to_le_bytes());
            h.update(t.to_bytes());
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK => h.update(st.st_rdev.to_le_bytes()),
        SFlag::S_IFDIR => {
            let fd = openat(parent, node.name.as_c_str(), read_dir(), Mode::empty())
                .map_err(|e| CopyError::sys("open", src.host_path(rel), e))?;
            for c in &node.children {
                let crel = join(rel, &String::from_utf8_lossy(c.name.to_bytes()));
                hash_node(src, fd.as_fd(), c, &crel, h)?;
            }
            h.update(b"\0end\0");
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_cleaned_as_if_at_the_root() {
        assert_eq!(rel_of("../../etc/passwd"), "etc/passwd");
        assert_eq!(rel_of("/a/./b/../c/"), "a/c");
        assert_eq!(rel_of("."), ".");
        assert_eq!(rel_of("/"), ".");
        assert_eq!(rel_of(".."), ".");
    }

    #[test]
    fn glob_meta_as_go_sees_it() {
        for p in ["*.rs", "a?", "[ab]", r"a\b"] {
            assert!(has_meta(p), "{p}");
        }
        assert!(!has_meta("plain/path.txt"));
    }

    #[test]
    fn tar_headers_are_recognised_by_checksum() {
        let mut h = tar::Header::new_ustar();
        h.set_path("x").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(is_tar_header(h.as_bytes()));
        let mut bad = *h.as_bytes();
        bad[0] ^= 1;
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
        assert!(!is_tar_header(b"short"));
        let mut text = [b'a'; 512];
        text[148..156].copy_from_slice(b"0000000\0");
        assert!(!is_tar_header(&text));
    }

    #[test]
    fn remote_sources_are_recognised() {
        assert!(remote("https://x/y"));
        assert!(remote("http://x/y"));
        assert!(remote("git@github.com:a/b.git"));
        assert!(!remote("http"));
        assert!(!remote("dir/https://x"));
    }
}
