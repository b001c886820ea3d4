// The property the `dockerfile` target checks; also included by the corpus
// test in crates/berth-build/tests/fuzz_corpus.rs so the corpus runs in CI.

/// Parses `data` (read as UTF-8, invalid bytes replaced) as a Dockerfile.
/// Whatever the bytes: never a panic; an error names a line within
/// 1..=line count + 1; every instruction starts on a line of the file, and
/// substitution with a fixed set of variables either succeeds or fails on
/// that instruction's line; each instruction's `text`, re-parsed after a
/// FROM line, neither panics. Returns whether the file parsed.
pub fn check_dockerfile(data: &[u8]) -> bool {
    use berth_build::dockerfile::{parse, Instruction, Kind};

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("a b".to_string()),
            "EMPTY" => Some(String::new()),
            "Q" => Some("\"'\\$`{}".to_string()),
            "PATH" => Some("/usr/local/bin:/usr/bin:/bin".to_string()),
            _ => None,
        }
    }

    fn check_instruction(ins: &Instruction, escape: char, lines: usize) {
        assert!(
            (1..=lines).contains(&ins.line),
            "instruction on line {} of {lines}",
            ins.line
        );
        assert!(!ins.text.contains('\n'), "text spans lines: {:?}", ins.text);
        match ins.expand(escape, &lookup) {
            Ok(e) => assert_eq!(e.line, ins.line),
            Err(err) => assert_eq!(err.line, ins.line, "{err}"),
        }
        match &ins.kind {
            Kind::Run(r) => {
                let _ = r.shell_script();
                let _ = r.shebang();
            }
            Kind::OnBuild(inner) => {
                assert_eq!(inner.line, ins.line);
                check_instruction(inner, escape, lines);
            }
            Kind::Arg(decls) => {
                for d in decls {
                    let _ = d.expand(escape, &lookup);
                }
            }
            _ => {}
        }
        let directive = if escape == '`' { "# escape=`\n" } else { "" };
        let again = format!("{directive}FROM scratch\n{}", ins.text);
        if let Err(e) = parse(&again) {
            assert!((1..=again.lines().count() + 1).contains(&e.line), "{e}");
        }
    }

    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match parse(&text) {
        Err(e) => {
            assert!(
                (1..=lines + 1).contains(&e.line),
                "error line {} of {lines}: {e}",
                e.line
            );
            assert!(!e.message.is_empty());
            false
        }
        Ok(df) => {
            assert!(df.escape == '\\' || df.escape == '`');
            assert!(!df.stages.is_empty());
            for a in &df.global_args {
                let _ = a.expand(df.escape, &lookup);
            }
            for st in &df.stages {
                assert!((1..=lines).contains(&st.line));
                if let Err(e) = st.expand_from(df.escape, &lookup) {
                    assert_eq!(e.line, st.line);
                }
                for ins in &st.instructions {
                    assert!(ins.line > st.line);
                    check_instruction(ins, df.escape, lines);
                }
            }
            true
        }
    }
}
