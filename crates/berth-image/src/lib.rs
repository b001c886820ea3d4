//! OCI images for Berth: reading and writing image layouts and `docker
//! save` archives, pulling from and pushing to registries, a
//! content-addressed store, unpacking layers (flat or as overlay lower
//! dirs) with whiteouts and hostile entries confined to the root, making
//! layers from overlay upper dirs, and turning an image config into an
//! OCI bundle.

pub mod bundle;
pub mod digest;
pub mod error;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub mod archive;
pub mod layer;
pub mod layout;
pub mod registry;
pub mod rootfs;
pub mod store;
