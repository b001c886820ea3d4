//! Pull and push against Debian's `docker-registry` (the CNCF
//! distribution registry), started by each test on a free loopback port
//! with its own storage directory: open, behind htpasswd basic auth, or
//! behind bearer tokens from a token service the test runs; all of it
//! stopped and removed through a guard ([`testbed::registry`]).

use std::fs;
use std::io::Read as _;
use std::path::Path;

use testbed::registry::{Auth, Registry};

use berth_image::registry::{self, Event, Options, Progress};
use berth_image::store::{media, Descriptor, Image, Index, Platform, PlatformSpec, Store};
use berth_image::{archive, Digest, Error};

/// A registry from the test bed, and options that reach it over plain
/// HTTP.
trait Insecure {
    fn insecure(&self) -> Options;
}

impl Insecure for Registry {
    fn insecure(&self) -> Options {
        Options {
            insecure: vec![self.host()],
            ..Options::default()
        }
    }
}

/// A store holding the busybox test image as `localhost/busybox:berth`.
fn busybox_store(dir: &Path) -> (Store, Image) {
    let store = Store::open(dir.join("store")).expect("store");
    let tar = testbed::image::busybox_archive(dir, "localhost/busybox:berth");
    let img = archive::import(&store, &tar, None)
        .expect("import")
        .remove(0);
    (store, img)
}

fn layer_digests(img: &Image) -> Vec<String> {
    img.manifest
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect()
}

fn quiet() -> impl FnMut(Progress) {
    |_| {}
}

#[test]
fn push_then_pull_gives_the_same_image() {
    let reg = Registry::start(Auth::Anonymous);
    let tmp = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(tmp.path());
    let target = format!("{}/berth/busybox:v1", reg.host());
    let o = reg.insecure();

    let mut events = Vec::new();
    let d = registry::push(&store, "localhost/busybox:berth", &target, &o, &mut |p| {
        events.push(p)
    })
    .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(d, img.digest);
    for l in &img.manifest.layers {
        assert!(
            events
                .iter()
                .any(|p| p.digest.as_str() == l.digest && p.event == Event::Done),
            "no Done for layer {}: {events:?}",
            l.digest
        );
    }
    // Again: the registry has every blob already.
    let mut events = Vec::new();
    registry::push(&store, "localhost/busybox:berth", &target, &o, &mut |p| {
        events.push(p)
    })
    .unwrap();
    assert!(
        events.iter().all(|p| p.event == Event::Exists),
        "{events:?}"
    );

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let mut events = Vec::new();
    let got = registry::pull(&fresh, &target, &o, &mut |p| events.push(p))
        .unwrap_or_else(|e| panic!("pull: {e}\n{}", reg.log()));
    assert_eq!(got.digest, img.digest);
    assert_eq!(layer_digests(&got), layer_digests(&img));
    assert_eq!(got.config_json, img.config_json);
    assert_eq!(
        fresh.read_blob(&got.digest).unwrap(),
        store.read_blob(&img.digest).unwrap()
    );
    assert_eq!(fresh.image(&target).unwrap().digest, img.digest);
    let layer = &img.manifest.layers[0];
    let last = events
        .iter()
        .rfind(|p| p.digest.as_str() == layer.digest)
        .expect("layer progress");
    assert_eq!(
        (last.event, last.done, last.total),
        (Event::Done, layer.size, layer.size)
    );
    // The unpacked image is usable: diff-ids check out.
    let diff = got.diff_ids().unwrap()[0].clone();
    fresh.layer_dir(&diff, layer).unwrap();

    // Pulling again fetches nothing.
    let mut events = Vec::new();
    registry::pull(&fresh, &target, &o, &mut |p| events.push(p)).unwrap();
    assert!(
        events.iter().all(|p| p.event == Event::Exists),
        "{events:?}"
    );

    // By digest, too.
    let by_digest = format!("{}/berth/busybox@{}", reg.host(), img.digest);
    let other = Store::open(tmp.path().join("other")).unwrap();
    assert_eq!(
        registry::pull(&other, &by_digest, &o, &mut quiet())
            .unwrap()
            .digest,
        img.digest
    );

    // An unknown image.
    let missing = format!("{}/berth/nothing:v1", reg.host());
    let e = registry::pull(&fresh, &missing, &o, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&missing) && msg.contains("not found"), "{msg}");
}

#[test]
fn plain_http_is_refused_unless_insecure() {
    let reg = Registry::start(Auth::Anonymous);
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = busybox_store(tmp.path());
    let target = format!("{}/berth/busybox:v1", reg.host());
    let o = Options::default();
    let e =
        registry::push(&store, "localhost/busybox:berth", &target, &o, &mut quiet()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.host()) && msg.contains("HTTPS") && msg.contains("insecure"),
        "{msg}"
    );
    let e = registry::pull(&store, &target, &o, &mut quiet()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("HTTPS") && msg.contains("insecure"), "{msg}");
    // Nothing was sent: the registry has no such repository.
    assert!(!reg.repository_dir("berth").exists());
}

#[test]
fn basic_auth_with_explicit_and_file_credentials() {
    let reg = Registry::start(Auth::Basic("berth", "s3cret"));
    let tmp = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(tmp.path());
    let target = format!("{}/berth/private:v1", reg.host());
    let good = Options {
        auth: Some(("berth".into(), "s3cret".into())),
        ..reg.insecure()
    };
    let d = registry::push(
        &store,
        "localhost/busybox:berth",
        &target,
        &good,
        &mut quiet(),
    )
    .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(d, img.digest);

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    // No credentials at all (an empty credential file list).
    let none = Options {
        auth_file: Some(tmp.path().join("no-such-auth.json")),
        ..reg.insecure()
    };
    let e = registry::pull(&fresh, &target, &none, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
    assert!(e.to_string().contains("no credentials"), "{e}");

    let wrong = Options {
        auth: Some(("berth".into(), "wrong".into())),
        ..reg.insecure()
    };
    for e in [
        registry::pull(&fresh, &target, &wrong, &mut quiet()).unwrap_err(),
        registry::push(
            &store,
            "localhost/busybox:berth",
            &target,
            &wrong,
            &mut quiet(),
        )
        .unwrap_err(),
    ] {
        assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("authentication refused") && msg.contains(&reg.host()),
            "{msg}"
        );
    }
    assert!(fresh.refs().unwrap().is_empty());

    let got = registry::pull(&fresh, &target, &good, &mut quiet()).unwrap();
    assert_eq!(got.digest, img.digest);

    // From a credential file, docker's format.
    let auth_file = tmp.path().join("auth.json");
    fs::write(
        &auth_file,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "YmVydGg6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let from_file = Options {
        auth_file: Some(auth_file),
        ..reg.insecure()
    };
    let other = Store::open(tmp.path().join("other")).unwrap();
    assert_eq!(
        registry::pull(&other, &target, &from_file, &mut quiet())
            .unwrap()
            .digest,
        img.digest
    );
}

#[test]
fn index_pulls_the_requested_platform() {
    let reg = Registry::start(Auth::Anonymous);
    let tmp = tempfile::tempdir().unwrap();
    let (store, host_img) = busybox_store(tmp.path());
    let o = reg.insecure();
    let host = PlatformSpec::host();
    let other_arch = if host.arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };

    // The same layer under a config that says another architecture.
    let mut cfg: serde_json::Value = serde_json::from_slice(&host_img.config_json).unwrap();
    cfg["architecture"] = other_arch.into();
    let cd = store
        .put_json(media::CONFIG, &serde_json::to_vec(&cfg).unwrap())
        .unwrap();
    let mut m = host_img.manifest.clone();
    m.config = cd;
    let md = store
        .put_json(media::MANIFEST, &serde_json::to_vec(&m).unwrap())
        .unwrap();
    let other_digest = Digest::parse(&md.digest).unwrap();
    store.tag("localhost/busybox:other", &other_digest).unwrap();

    let repo = format!("{}/berth/multi", reg.host());
    for (r, tag) in [
        ("localhost/busybox:berth", "host"),
        ("localhost/busybox:other", "other"),
    ] {
        registry::push(&store, r, &format!("{repo}:{tag}"), &o, &mut quiet()).unwrap();
    }
    let entry = |d: &Digest, arch: &str| Descriptor {
        media_type: media::MANIFEST.into(),
        digest: d.to_string(),
        size: store.read_blob(d).unwrap().len() as u64,
        platform: Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: None,
        }),
        annotations: Default::default(),
    };
    let index = Index {
        schema_version: 2,
        media_type: Some(media::INDEX.into()),
        manifests: vec![
            entry(&host_img.digest, &host.arch),
            entry(&other_digest, other_arch),
        ],
    };
    let bytes = serde_json::to_vec(&index).unwrap();
    let list = format!("{repo}:latest");
    let d = registry::push_manifest(&list, &bytes, media::INDEX, &o)
        .unwrap_or_else(|e| panic!("push index: {e}\n{}", reg.log()));
    assert_eq!(d, Digest::of(&bytes));

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let got = registry::pull(&fresh, &list, &o, &mut quiet()).unwrap();
    assert_eq!(got.digest, host_img.digest);

    let other = Options {
        platform: PlatformSpec::parse(&format!("linux/{other_arch}")).unwrap(),
        ..reg.insecure()
    };
    let fresh2 = Store::open(tmp.path().join("fresh2")).unwrap();
    let got = registry::pull(&fresh2, &list, &other, &mut quiet()).unwrap();
    assert_eq!(got.digest, other_digest);
    assert_eq!(got.config().unwrap().architecture().to_string(), other_arch);

    let none = Options {
        platform: PlatformSpec::parse("linux/s390x").unwrap(),
        ..reg.insecure()
    };
    let e = registry::pull(&fresh2, &list, &none, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::NoPlatform { .. }), "{e:?}");
    assert!(e.to_string().contains(other_arch), "{e}");
}

#[test]
fn corrupted_blob_is_refused_and_not_stored() {
    let reg = Registry::start(Auth::Anonymous);
    let tmp = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(tmp.path());
    let target = format!("{}/berth/busybox:v1", reg.host());
    let o = reg.insecure();
    registry::push(&store, "localhost/busybox:berth", &target, &o, &mut quiet()).unwrap();

    let layer = Digest::parse(&img.manifest.layers[0].digest).unwrap();
    let data = reg.blob_data(layer.hex());
    let mut bytes = Vec::new();
    fs::File::open(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()))
        .read_to_end(&mut bytes)
        .unwrap();
    // Same length, different content.
    for b in bytes.iter_mut().take(512) {
        *b ^= 0x5a;
    }
    fs::write(&data, &bytes).unwrap();

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let e = registry::pull(&fresh, &target, &o, &mut quiet()).unwrap_err();
    match &e {
        Error::DigestMismatch { what, expected, .. } => {
            assert_eq!(expected, layer.as_str());
            assert!(
                what.contains(&target) && what.contains(layer.as_str()),
                "{e}"
            );
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!fresh.has_blob(&layer));
    assert!(!fresh.has_blob(&img.digest), "the manifest was stored");
    assert!(fresh.refs().unwrap().is_empty());
    assert_eq!(fs::read_dir(fresh.root().join("tmp")).unwrap().count(), 0);
}

/// No blob, reference or leftover download in `store`.
fn assert_empty(store: &Store) {
    assert!(store.refs().unwrap().is_empty());
    for d in ["blobs/sha256", "tmp"] {
        let n = fs::read_dir(store.root().join(d)).unwrap().count();
        assert_eq!(n, 0, "{d} is not empty");
    }
}

/// The registry's answer to an unauthenticated `GET /v2/`.
fn challenge(reg: &Registry) -> String {
    use std::io::Write as _;
    let mut c = std::net::TcpStream::connect(reg.host()).unwrap();
    write!(
        c,
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        reg.host()
    )
    .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn bearer_token_auth_through_a_token_service() {
    let reg = Registry::start(Auth::Token("berth", "t0ken-pass"));
    let tmp = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(tmp.path());
    let repo = "berth/private";
    let target = format!("{}/{repo}:v1", reg.host());
    let with = |user: &str, password: &str| Options {
        auth: Some((user.into(), password.into())),
        ..reg.insecure()
    };
    let good = with("berth", "t0ken-pass");
    let wrong = with("berth", "wrong");
    let anonymous = Options {
        auth_file: Some(tmp.path().join("no-such-auth.json")),
        ..reg.insecure()
    };

    // The registry sends clients to the token service, and to nothing else.
    let c = challenge(&reg);
    assert!(c.starts_with("HTTP/1.1 401"), "{c}");
    assert!(
        c.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=")
            && c.contains(&format!("service=\"{}\"", testbed::registry::TOKEN_SERVICE)),
        "{c}"
    );

    let push =
        |o: &Options| registry::push(&store, "localhost/busybox:berth", &target, o, &mut quiet());
    // Refused credentials: the token service's reason comes through.
    let e = push(&wrong).unwrap_err();
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("authentication refused")
            && msg.contains(&reg.host())
            && msg.contains("invalid username or password")
            && !msg.contains('{'),
        "{msg}"
    );
    // No credentials: a token that grants nothing, which the registry
    // refuses.
    let e = push(&anonymous).unwrap_err();
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("authentication refused") && msg.contains("no credentials"),
        "{msg}"
    );
    assert!(!reg.repository_dir(repo).exists(), "something was pushed");
    let reqs = reg.token_requests();
    assert!(
        reqs.iter().any(|r| r.status == 401),
        "no refused request: {reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.user.is_none() && r.status == 200 && r.granted.is_empty()),
        "no anonymous token: {reqs:?}"
    );

    let d = push(&good).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(d, img.digest);
    assert!(reg.repository_dir(repo).is_dir());
    let push_scope = format!("repository:{repo}:pull,push");
    let reqs = reg.token_requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some("berth")
            && r.status == 200
            && r.granted == [push_scope.clone()]),
        "no push token: {reqs:?}"
    );

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let got = registry::pull(&fresh, &target, &good, &mut quiet())
        .unwrap_or_else(|e| panic!("pull: {e}\n{}", reg.log()));
    assert_eq!(got.digest, img.digest);
    assert_eq!(
        fresh.read_blob(&got.digest).unwrap(),
        store.read_blob(&img.digest).unwrap()
    );
    assert_eq!(got.config_json, img.config_json);
    assert_eq!(layer_digests(&got), layer_digests(&img));
    // The layer's content: its diff-id checks out as it is unpacked.
    let diff = got.diff_ids().unwrap()[0].clone();
    let dir = fresh.layer_dir(&diff, &got.manifest.layers[0]).unwrap();
    assert!(dir.join("bin/busybox").is_file());
    let pull_scope = format!("repository:{repo}:pull");
    assert!(
        reg.token_requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("berth") && r.granted == [pull_scope.clone()]),
        "no pull token: {:?}",
        reg.token_requests()
    );

    let other = Store::open(tmp.path().join("other")).unwrap();
    let e = registry::pull(&other, &target, &wrong, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
    assert!(
        e.to_string().contains("invalid username or password"),
        "{e}"
    );
    let e = registry::pull(&other, &target, &anonymous, &mut quiet()).unwrap_err();
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
    assert!(e.to_string().contains("no credentials"), "{e}");
    assert_empty(&other);
}

/// A host that is itself async calls push and pull from its runtime's
/// threads, where blocking on another runtime would panic.
#[test]
fn push_and_pull_work_from_inside_a_tokio_runtime() {
    let reg = Registry::start(Auth::Anonymous);
    let tmp = tempfile::tempdir().unwrap();
    let (store, img) = busybox_store(tmp.path());
    let target = format!("{}/berth/from-async:v1", reg.host());
    let o = reg.insecure();
    let host = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let got = host.block_on(async {
        registry::push(&store, "localhost/busybox:berth", &target, &o, &mut quiet())
            .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        registry::pull(&fresh, &target, &o, &mut quiet())
            .unwrap_or_else(|e| panic!("pull: {e}\n{}", reg.log()))
    });
    assert_eq!(got.digest, img.digest);
    assert_eq!(layer_digests(&got), layer_digests(&img));
}
