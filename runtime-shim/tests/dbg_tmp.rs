mod common;
use common::*;
#[test]
fn dbg() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    if let Ok(j) = std::env::var("DBG_SET") {
        let v: Value = serde_json::from_str(&j).unwrap();
        for (k, val) in v.as_object().unwrap() {
            b.set(k, val.clone());
        }
    }
    if std::env::var("DBG_TIME").is_ok() {
        b.namespace("time", None);
    }
    b.args(&sh(&std::env::var("DBG").unwrap()));
    let id = t.id("dbg");
    let o = t.run(&id, &b, &[]);
    println!("{o}");
    panic!();
}
