//! Entry names made relative to the root, lexically: a leading `/` is
//! dropped, `.` and empty components vanish, and `..` removes the previous
//! component but never climbs above the root (`../x`, `/x` and `a/../../x`
//! all name `x`), as umoci's securejoin does. This only decides which name
//! an entry gets; symlinks met on the way are confined when the name is
//! resolved (see `root.rs`).

use std::ffi::CStr;

/// A normalised entry name, reused from entry to entry so the hot loop does
/// not allocate.
#[derive(Debug, Default)]
pub(crate) struct EntryPath {
    /// `a/b/c` followed by a NUL; just a NUL for the root.
    buf: Vec<u8>,
    /// Where each component starts in `buf`.
    starts: Vec<usize>,
    /// The parent's name with a NUL, built on demand.
    parent: Vec<u8>,
}

/// Why a name cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HasNul;

impl EntryPath {
    /// Replaces the name with `raw`, normalised.
    pub(crate) fn set(&mut self, raw: &[u8]) -> Result<(), HasNul> {
        if raw.contains(&0) {
            return Err(HasNul);
        }
        self.buf.clear();
        self.starts.clear();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    if let Some(start) = self.starts.pop() {
                        // Drop the component and the `/` before it.
                        self.buf.truncate(start.saturating_sub(1));
                    }
                }
                _ => {
                    if !self.starts.is_empty() {
                        self.buf.push(b'/');
                    }
                    self.starts.push(self.buf.len());
                    self.buf.extend_from_slice(c);
                }
            }
        }
        self.buf.push(0);
        Ok(())
    }

    /// True when the name is the root itself (`.`, `/`, `..`, `a/..`).
    pub(crate) fn is_root(&self) -> bool {
        self.starts.is_empty()
    }

    /// The whole name, `a/b/c` (empty for the root).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.buf.len() - 1]
    }

    /// The whole name with its NUL; `.` for the root.
    pub(crate) fn as_cstr(&self) -> &CStr {
        if self.is_root() {
            return c".";
        }
        CStr::from_bytes_with_nul(&self.buf).unwrap_or(c".")
    }

    /// The last component, `c` (empty for the root).
    pub(crate) fn name_bytes(&self) -> &[u8] {
        match self.starts.last() {
            Some(&s) => &self.buf[s..self.buf.len() - 1],
            None => b"",
        }
    }

    /// The last component with its NUL.
    pub(crate) fn name(&self) -> &CStr {
        match self.starts.last() {
            Some(&s) => CStr::from_bytes_with_nul(&self.buf[s..]).unwrap_or(c"."),
            None => c".",
        }
    }

    /// The parent's name, `a/b` (empty when the parent is the root).
    pub(crate) fn parent_bytes(&self) -> &[u8] {
        match self.starts.last() {
            Some(&s) if s > 0 => &self.buf[..s - 1],
            _ => b"",
        }
    }

    /// The parent's name with a NUL; `.` for the root.
    pub(crate) fn parent_cstr(&mut self) -> &CStr {
        let len = self.parent_bytes().len();
        if len == 0 {
            return c".";
        }
        self.parent.clear();
        self.parent.extend_from_slice(&self.buf[..len]);
        self.parent.push(0);
        CStr::from_bytes_with_nul(&self.parent).unwrap_or(c".")
    }

    /// True when a component other than the last starts with `prefix`.
    pub(crate) fn parent_has_prefix(&self, prefix: &[u8]) -> bool {
        let n = self.starts.len();
        self.starts
            .iter()
            .take(n.saturating_sub(1))
            .any(|&s| self.buf[s..].starts_with(prefix))
    }
}

/// Each proper ancestor of `path` (`a/b/c` gives `a/b`, then `a`).
pub(crate) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let slash = path[..end].iter().rposition(|&b| b == b'/')?;
        end = slash;
        Some(&path[..slash])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        let mut p = EntryPath::default();
        p.set(raw.as_bytes()).unwrap();
        String::from_utf8(p.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn names_are_clamped_at_the_root() {
        assert_eq!(norm("a/b/c"), "a/b/c");
        assert_eq!(norm("./a//b/./c/"), "a/b/c");
        assert_eq!(norm("/etc/passwd"), "etc/passwd");
        assert_eq!(norm("../escape"), "escape");
        assert_eq!(norm("a/../../escape"), "escape");
        assert_eq!(norm("../../../../etc/shadow"), "etc/shadow");
        assert_eq!(norm("a/b/../c"), "a/c");
        assert_eq!(norm("a/b/../../.."), "");
        assert_eq!(norm("..."), "...");
        assert_eq!(norm(".wh...").len(), 6);
        for root in [".", "./", "/", "..", "a/..", ""] {
            let mut p = EntryPath::default();
            p.set(root.as_bytes()).unwrap();
            assert!(p.is_root(), "{root:?}");
            assert_eq!(p.as_cstr(), c".");
            assert_eq!(p.parent_cstr(), c".");
        }
    }

    #[test]
    fn splits_parent_and_name() {
        let mut p = EntryPath::default();
        p.set(b"/usr/lib/../bin/sh").unwrap();
        assert_eq!(p.as_bytes(), b"usr/bin/sh");
        assert_eq!(p.name_bytes(), b"sh");
        assert_eq!(p.name(), c"sh");
        assert_eq!(p.parent_bytes(), b"usr/bin");
        assert_eq!(p.parent_cstr(), c"usr/bin");
        assert_eq!(p.as_cstr(), c"usr/bin/sh");
        p.set(b"top").unwrap();
        assert_eq!(p.parent_bytes(), b"");
        assert_eq!(p.parent_cstr(), c".");
        assert_eq!(p.name(), c"top");
        assert!(p.set(b"a\0b").is_err());
    }

    #[test]
    fn finds_reserved_prefixes_in_parents_only() {
        let mut p = EntryPath::default();
        p.set(b"a/.wh.b/c").unwrap();
        assert!(p.parent_has_prefix(b".wh."));
        p.set(b"a/b/.wh.c").unwrap();
        assert!(!p.parent_has_prefix(b".wh."));
    }

    #[test]
    fn lists_ancestors() {
        let a: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(a, [&b"a/b"[..], b"a"]);
        assert_eq!(ancestors(b"a").count(), 0);
    }
}
