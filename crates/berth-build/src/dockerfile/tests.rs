//! Parser and substitution tests: exact trees for each form, Docker's error
//! lines, and substitution with quotes and both escape characters.

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn ins(line: usize, text: &str, kind: Kind) -> Instruction {
    Instruction {
        line,
        text: s(text),
        kind,
    }
}

fn err(text: &str) -> ParseError {
    parse(text).expect_err("the Dockerfile should not parse")
}

/// The instructions of the only stage.
fn one_stage(text: &str) -> Vec<Instruction> {
    let df = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(df.stages.len(), 1);
    df.stages.into_iter().next().unwrap().instructions
}

fn kinds(text: &str) -> Vec<Kind> {
    one_stage(text).into_iter().map(|i| i.kind).collect()
}

fn vars(name: &str) -> Option<String> {
    match name {
        "NAME" => Some(s("world")),
        "SP" => Some(s("80 443")),
        "EMPTY" => Some(String::new()),
        "DIR" => Some(s("/srv/app")),
        "TAG" => Some(s("3.19")),
        "ARCH" => Some(s("linux/arm64")),
        _ => None,
    }
}

fn expanded(text: &str) -> Vec<Kind> {
    one_stage(text)
        .iter()
        .map(|i| i.expand('\\', &vars).unwrap().kind)
        .collect()
}

#[test]
fn every_instruction() {
    let text = "\
# syntax=docker/dockerfile:1
ARG BASE=alpine:3.19 OTHER
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
RUN apk add --no-cache curl
RUN [\"/bin/sh\", \"-c\", \"echo hi\"]
CMD [\"serve\", \"--port\", \"80\"]
ENTRYPOINT /entry.sh
SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]
ENV PATH=/opt/bin:$PATH MODE=\"prod x\"
ENV LEGACY value with spaces
ARG VERSION=1.0
LABEL org.opencontainers.image.title=\"demo app\" tier=web
MAINTAINER Jane Doe <jane@example.com>
EXPOSE 80/tcp 443
VOLUME [\"/data\", \"/logs\"]
VOLUME /cache /tmp/x
USER app:app
WORKDIR /srv/app
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1
ONBUILD COPY . /src
COPY --from=build --chown=1000:1000 --chmod=0755 --link a b /dest/
ADD https://example.com/x.tgz /opt/
FROM scratch
COPY [\"with space\", \"/dst dir/\"]
";
    let df = parse(text).unwrap();
    assert_eq!(df.escape, '\\');
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.global_args,
        [
            ArgDecl {
                name: s("BASE"),
                default: Some(s("alpine:3.19"))
            },
            ArgDecl {
                name: s("OTHER"),
                default: None
            }
        ]
    );
    assert_eq!(df.stages.len(), 2);
    let st = &df.stages[0];
    assert_eq!(
        (
            st.line,
            st.image.as_str(),
            st.platform.as_deref(),
            st.name.as_deref()
        ),
        (3, "${BASE}", Some("$BUILDPLATFORM"), Some("build"))
    );
    let want = vec![
        ins(
            4,
            "RUN apk add --no-cache curl",
            Kind::Run(Run {
                command: Command::Shell(s("apk add --no-cache curl")),
                heredocs: vec![],
                network: None,
            }),
        ),
        ins(
            5,
            r#"RUN ["/bin/sh", "-c", "echo hi"]"#,
            Kind::Run(Run {
                command: Command::Exec(sv(&["/bin/sh", "-c", "echo hi"])),
                heredocs: vec![],
                network: None,
            }),
        ),
        ins(
            6,
            r#"CMD ["serve", "--port", "80"]"#,
            Kind::Cmd(Command::Exec(sv(&["serve", "--port", "80"]))),
        ),
        ins(
            7,
            "ENTRYPOINT /entry.sh",
            Kind::Entrypoint(Command::Shell(s("/entry.sh"))),
        ),
        ins(
            8,
            r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#,
            Kind::Shell(sv(&["/bin/bash", "-o", "pipefail", "-c"])),
        ),
        ins(
            9,
            r#"ENV PATH=/opt/bin:$PATH MODE="prod x""#,
            Kind::Env(vec![
                (s("PATH"), s("/opt/bin:$PATH")),
                (s("MODE"), s("\"prod x\"")),
            ]),
        ),
        ins(
            10,
            "ENV LEGACY value with spaces",
            Kind::Env(vec![(s("LEGACY"), s("value with spaces"))]),
        ),
        ins(
            11,
            "ARG VERSION=1.0",
            Kind::Arg(vec![ArgDecl {
                name: s("VERSION"),
                default: Some(s("1.0")),
            }]),
        ),
        ins(
            12,
            r#"LABEL org.opencontainers.image.title="demo app" tier=web"#,
            Kind::Label(vec![
                (s("org.opencontainers.image.title"), s("\"demo app\"")),
                (s("tier"), s("web")),
            ]),
        ),
        ins(
            13,
            "MAINTAINER Jane Doe <jane@example.com>",
            Kind::Maintainer(s("Jane Doe <jane@example.com>")),
        ),
        ins(
            14,
            "EXPOSE 80/tcp 443",
            Kind::Expose(sv(&["80/tcp", "443"])),
        ),
        ins(
            15,
            r#"VOLUME ["/data", "/logs"]"#,
            Kind::Volume(sv(&["/data", "/logs"])),
        ),
        ins(
            16,
            "VOLUME /cache /tmp/x",
            Kind::Volume(sv(&["/cache", "/tmp/x"])),
        ),
        ins(17, "USER app:app", Kind::User(s("app:app"))),
        ins(18, "WORKDIR /srv/app", Kind::Workdir(s("/srv/app"))),
        ins(19, "STOPSIGNAL SIGTERM", Kind::StopSignal(s("SIGTERM"))),
        ins(
            20,
            "HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1",
            Kind::Healthcheck(Healthcheck::Check {
                test: Command::Shell(s("curl -f http://localhost/ || exit 1")),
                interval: Some(s("30s")),
                timeout: Some(s("5s")),
                start_period: Some(s("1m")),
                start_interval: Some(s("2s")),
                retries: Some(s("3")),
            }),
        ),
        ins(
            21,
            "ONBUILD COPY . /src",
            Kind::OnBuild(Box::new(ins(
                21,
                "COPY . /src",
                Kind::Copy(Copy {
                    sources: vec![Source::Path(s("."))],
                    dest: s("/src"),
                    from: None,
                    chown: None,
                    chmod: None,
                    link: false,
                }),
            ))),
        ),
        ins(
            22,
            "COPY --from=build --chown=1000:1000 --chmod=0755 --link a b /dest/",
            Kind::Copy(Copy {
                sources: vec![Source::Path(s("a")), Source::Path(s("b"))],
                dest: s("/dest/"),
                from: Some(s("build")),
                chown: Some(s("1000:1000")),
                chmod: Some(s("0755")),
                link: true,
            }),
        ),
        ins(
            23,
            "ADD https://example.com/x.tgz /opt/",
            Kind::Add(Copy {
                sources: vec![Source::Path(s("https://example.com/x.tgz"))],
                dest: s("/opt/"),
                from: None,
                chown: None,
                chmod: None,
                link: false,
            }),
        ),
    ];
    assert_eq!(st.instructions.len(), want.len());
    for (got, want) in st.instructions.iter().zip(&want) {
        assert_eq!(got, want);
    }
    let st2 = &df.stages[1];
    assert_eq!(
        (st2.line, st2.image.as_str(), &st2.name),
        (24, "scratch", &None)
    );
    assert_eq!(
        st2.instructions[0].kind,
        Kind::Copy(Copy {
            sources: vec![Source::Path(s("with space"))],
            dest: s("/dst dir/"),
            from: None,
            chown: None,
            chmod: None,
            link: false,
        })
    );
}

#[test]
fn names_are_case_insensitive() {
    let df = parse("from alpine as Base\nrun echo hi\nCmd [\"a\"]\nWorkDir /x\n").unwrap();
    let st = &df.stages[0];
    assert_eq!(st.name.as_deref(), Some("base"));
    assert_eq!(
        st.instructions
            .iter()
            .map(|i| i.kind.clone())
            .collect::<Vec<_>>(),
        [
            Kind::Run(Run {
                command: Command::Shell(s("echo hi")),
                heredocs: vec![],
                network: None
            }),
            Kind::Cmd(Command::Exec(sv(&["a"]))),
            Kind::Workdir(s("/x")),
        ]
    );
}

#[test]
fn continuations_comments_and_blank_lines() {
    let text = concat!(
        "FROM alpine\n",
        "RUN apk add \\\n",
        "    curl \\\n",
        "# a comment between continuation lines\n",
        "\n",
        "    git   \n",
        "\n",
        "# trailing comment\n",
        "RUN echo a\\\n",
        "b\n",
    );
    let got = one_stage(text);
    assert_eq!(
        got,
        [
            ins(
                2,
                "RUN apk add curl git",
                Kind::Run(Run {
                    // Docker joins the pieces as written, without a separator.
                    command: Command::Shell(s("apk add     curl     git")),
                    heredocs: vec![],
                    network: None,
                })
            ),
            ins(
                9,
                "RUN echo a b",
                Kind::Run(Run {
                    command: Command::Shell(s("echo ab")),
                    heredocs: vec![],
                    network: None,
                })
            ),
        ]
    );
}

#[test]
fn continuation_whitespace_and_escaped_escape() {
    // Spaces after the backslash still continue; a doubled backslash does not.
    let got = kinds("FROM a\nRUN echo x \\  \n y\nRUN echo c:\\\\\nRUN z\n");
    assert_eq!(
        got,
        [
            Kind::Run(Run {
                command: Command::Shell(s("echo x  y")),
                heredocs: vec![],
                network: None
            }),
            Kind::Run(Run {
                command: Command::Shell(s("echo c:\\\\")),
                heredocs: vec![],
                network: None
            }),
            Kind::Run(Run {
                command: Command::Shell(s("z")),
                heredocs: vec![],
                network: None
            }),
        ]
    );
}

#[test]
fn continuation_at_end_of_file() {
    // Docker takes what it has when the file ends mid-instruction...
    assert_eq!(
        kinds("FROM a\nRUN echo hi \\"),
        [Kind::Run(Run {
            command: Command::Shell(s("echo hi")),
            heredocs: vec![],
            network: None
        })]
    );
    // ...which leaves nothing to run here.
    assert_eq!(
        err("FROM a\nRUN \\\n\n# c\n"),
        ParseError {
            line: 2,
            message: s("RUN requires at least one argument")
        }
    );
}

#[test]
fn backtick_escape_directive() {
    let text = concat!(
        "# escape=`\n",
        "FROM mcr.microsoft.com/windows/servercore\n",
        "COPY testfile.txt c:\\\n",
        "RUN dir c:\\ `\n",
        "    && echo done\n",
    );
    let df = parse(text).unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.stages[0].instructions,
        [
            ins(
                3,
                "COPY testfile.txt c:\\",
                Kind::Copy(Copy {
                    sources: vec![Source::Path(s("testfile.txt"))],
                    dest: s("c:\\"),
                    from: None,
                    chown: None,
                    chmod: None,
                    link: false,
                })
            ),
            ins(
                4,
                "RUN dir c:\\ && echo done",
                Kind::Run(Run {
                    command: Command::Shell(s("dir c:\\     && echo done")),
                    heredocs: vec![],
                    network: None,
                })
            ),
        ]
    );
    // Substitution honours the backtick too, leaving backslashes alone.
    let ins = &df.stages[0].instructions[0];
    assert_eq!(
        ins.expand('`', &vars).unwrap().kind,
        Kind::Copy(Copy {
            sources: vec![Source::Path(s("testfile.txt"))],
            dest: s("c:\\"),
            from: None,
            chown: None,
            chmod: None,
            link: false,
        })
    );
}

#[test]
fn directives_only_at_the_top() {
    // After a comment, a blank line or an instruction, it is a comment.
    for text in [
        "# hello\n# escape=`\nFROM a\nRUN x `\n",
        "\n# escape=`\nFROM a\nRUN x `\n",
        "FROM a\n# escape=`\nRUN x `\n",
    ] {
        let df = parse(text).unwrap();
        assert_eq!(df.escape, '\\', "{text:?}");
    }
    // Unknown directives end the directive block too.
    let df = parse("# foo=bar\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.escape, '\\');
    // Case, spacing and order are free; syntax is recorded.
    let df = parse("#  SYNTAX = docker/dockerfile:1.7 \n#Escape=`\nFROM a\n").unwrap();
    assert_eq!(
        (df.escape, df.syntax.as_deref()),
        ('`', Some("docker/dockerfile:1.7"))
    );
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM a\n"),
        ParseError {
            line: 2,
            message: s("only one escape parser directive can be used")
        }
    );
    assert_eq!(err("# escape=x\nFROM a\n").line, 1);
    assert!(err("# escape=x\nFROM a\n")
        .message
        .contains("invalid escape token 'x'"));
    // A byte-order mark does not hide a directive.
    assert_eq!(parse("\u{feff}# escape=`\nFROM a\n").unwrap().escape, '`');
}

#[test]
fn exec_and_shell_forms() {
    assert_eq!(
        kinds(
            "FROM a\nCMD [\"a\", \"b c\"]\nCMD [ \"x\" ] \nCMD [a, b]\nCMD [\"unterminated\"\nENTRYPOINT []\nCMD\nRUN [\"a\"] && b\n"
        ),
        [
            Kind::Cmd(Command::Exec(sv(&["a", "b c"]))),
            Kind::Cmd(Command::Exec(sv(&["x"]))),
            Kind::Cmd(Command::Shell(s("[a, b]"))),
            Kind::Cmd(Command::Shell(s("[\"unterminated\""))),
            Kind::Entrypoint(Command::Exec(vec![])),
            Kind::Cmd(Command::Shell(String::new())),
            Kind::Run(Run {
                command: Command::Shell(s("[\"a\"] && b")),
                heredocs: vec![],
                network: None
            }),
        ]
    );
    assert_eq!(
        err("FROM a\nCMD [\"a\", 1]\n"),
        ParseError {
            line: 2,
            message: s("when using JSON array syntax, arrays must be comprised of strings only")
        }
    );
    assert_eq!(
        err("FROM a\nRUN []\n").message,
        "RUN requires at least one argument"
    );
}

#[test]
fn shell_needs_json() {
    assert_eq!(
        err("FROM a\nSHELL /bin/bash -c\n"),
        ParseError {
            line: 2,
            message: s("SHELL requires the arguments to be in JSON form")
        }
    );
    assert_eq!(
        err("FROM a\nSHELL []\n").message,
        "SHELL requires at least one argument"
    );
}

#[test]
fn heredocs_for_run() {
    let text = "FROM a\n\
RUN <<EOF\n\
apt-get update\n\
apt-get install -y vim\n\
EOF\n\
RUN <<-\"END\" bash -e\n\
\techo $HOME\n\
\tEND\n\
RUN cat <<A <<'B' > /f\n\
a $x\n\
A\n\
b $y\n\
B\n\
RUN echo done\n";
    let got = one_stage(text);
    assert_eq!(
        got,
        [
            ins(
                2,
                "RUN <<EOF",
                Kind::Run(Run {
                    command: Command::Shell(s("<<EOF")),
                    heredocs: vec![Heredoc {
                        name: s("EOF"),
                        content: s("apt-get update\napt-get install -y vim\n"),
                        expand: true,
                        strip_tabs: false,
                    }],
                    network: None,
                })
            ),
            ins(
                6,
                "RUN <<-\"END\" bash -e",
                Kind::Run(Run {
                    command: Command::Shell(s("<<-\"END\" bash -e")),
                    heredocs: vec![Heredoc {
                        name: s("END"),
                        content: s("\techo $HOME\n"),
                        expand: false,
                        strip_tabs: true,
                    }],
                    network: None,
                })
            ),
            ins(
                9,
                "RUN cat <<A <<'B' > /f",
                Kind::Run(Run {
                    command: Command::Shell(s("cat <<A <<'B' > /f")),
                    heredocs: vec![
                        Heredoc {
                            name: s("A"),
                            content: s("a $x\n"),
                            expand: true,
                            strip_tabs: false,
                        },
                        Heredoc {
                            name: s("B"),
                            content: s("b $y\n"),
                            expand: false,
                            strip_tabs: false,
                        },
                    ],
                    network: None,
                })
            ),
            ins(
                14,
                "RUN echo done",
                Kind::Run(Run {
                    command: Command::Shell(s("echo done")),
                    heredocs: vec![],
                    network: None,
                })
            ),
        ]
    );
    let script = |i: usize| match &got[i].kind {
        Kind::Run(r) => r.shell_script(),
        _ => unreachable!(),
    };
    assert_eq!(
        script(0).as_deref(),
        Some("apt-get update\napt-get install -y vim\n")
    );
    assert_eq!(
        script(1).as_deref(),
        Some("<<-\"END\" bash -e\n\techo $HOME\nEND")
    );
    assert_eq!(
        script(2).as_deref(),
        Some("cat <<A <<'B' > /f\na $x\nA\nb $y\nB")
    );
    assert_eq!(script(3).as_deref(), Some("echo done"));
}

#[test]
fn lone_heredoc_details() {
    let got = kinds("FROM a\nRUN <<-EOF\n\t\techo hi\n\tEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN [\"<<EOF\"]\n");
    let Kind::Run(tabbed) = &got[0] else { panic!() };
    assert_eq!(tabbed.shell_script().as_deref(), Some("echo hi\n"));
    assert_eq!(tabbed.shebang(), None);
    let Kind::Run(py) = &got[1] else { panic!() };
    assert_eq!(py.shebang().map(|h| h.name.as_str()), Some("EOF"));
    // Exec form has no heredocs and no script.
    let Kind::Run(exec) = &got[2] else { panic!() };
    assert_eq!(exec.heredocs, []);
    assert_eq!(exec.shell_script(), None);
}

#[test]
fn heredocs_for_copy_and_onbuild() {
    let text = "FROM a\n\
COPY <<EOF <<-\"two\" /etc/\n\
greeting=\"hello $NAME\"\n\
EOF\n\
\tliteral $NAME\n\
\t\ttwo\n\
ONBUILD RUN <<EOF\n\
echo triggered\n\
EOF\n";
    let got = one_stage(text);
    let one = Heredoc {
        name: s("EOF"),
        content: s("greeting=\"hello $NAME\"\n"),
        expand: true,
        strip_tabs: false,
    };
    let two = Heredoc {
        name: s("two"),
        content: s("literal $NAME\n"),
        expand: false,
        strip_tabs: true,
    };
    assert_eq!(
        got[0].kind,
        Kind::Copy(Copy {
            sources: vec![Source::Heredoc(one.clone()), Source::Heredoc(two.clone())],
            dest: s("/etc/"),
            from: None,
            chown: None,
            chmod: None,
            link: false,
        })
    );
    // Substitution reaches the unquoted body, keeping its quotes.
    assert_eq!(
        got[0].expand('\\', &vars).unwrap().kind,
        Kind::Copy(Copy {
            sources: vec![
                Source::Heredoc(Heredoc {
                    content: s("greeting=\"hello world\"\n"),
                    ..one
                }),
                Source::Heredoc(two),
            ],
            dest: s("/etc/"),
            from: None,
            chown: None,
            chmod: None,
            link: false,
        })
    );
    assert_eq!(
        got[1],
        ins(
            7,
            "ONBUILD RUN <<EOF",
            Kind::OnBuild(Box::new(ins(
                7,
                "RUN <<EOF",
                Kind::Run(Run {
                    command: Command::Shell(s("<<EOF")),
                    heredocs: vec![Heredoc {
                        name: s("EOF"),
                        content: s("echo triggered\n"),
                        expand: true,
                        strip_tabs: false,
                    }],
                    network: None,
                })
            )))
        )
    );
    assert_eq!(
        err("FROM a\nCOPY x <<EOF\nEOF\n").message,
        "COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn heredoc_errors_report_the_instruction_line() {
    assert_eq!(
        err("FROM a\nRUN echo \\\n  <<EOF\nnever closed\n"),
        ParseError {
            line: 2,
            message: s("unterminated heredoc EOF")
        }
    );
    // The terminator must match exactly (only tabs stripped, and only for <<-).
    assert_eq!(err("FROM a\nRUN <<EOF\n EOF\n").line, 2);
    assert_eq!(err("FROM a\nRUN <<EOF\n\tEOF\n").line, 2);
    // Heredocs are not recognised where Docker does not look for them.
    assert_eq!(kinds("FROM a\nENV X=<<EOF\nRUN echo \"<<EOF\"\n").len(), 2);
}

#[test]
fn run_flags() {
    assert_eq!(
        kinds("FROM a\nRUN --network=none wget x\nRUN --network=host -- --x\n"),
        [
            Kind::Run(Run {
                command: Command::Shell(s("wget x")),
                heredocs: vec![],
                network: Some(s("none")),
            }),
            Kind::Run(Run {
                command: Command::Shell(s("--x")),
                heredocs: vec![],
                network: Some(s("host")),
            }),
        ]
    );
    for (text, msg) in [
        (
            "FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n",
            "RUN --mount is not supported",
        ),
        (
            "FROM a\nRUN --security=insecure x\n",
            "RUN --security is not supported",
        ),
        ("FROM a\nRUN --bogus x\n", "unknown flag: --bogus"),
        (
            "FROM a\nRUN --network x\n",
            "missing a value on flag: --network",
        ),
        (
            "FROM a\nRUN --network=bridge x\n",
            "unsupported network mode for RUN --network: \"bridge\" (default, none or host)",
        ),
        (
            "FROM a\nRUN --network=none --network=host x\n",
            "duplicate flag specified: --network",
        ),
        ("FROM a\nCMD --help\n", "unknown flag: --help"),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
}

#[test]
fn copy_flags_and_errors() {
    for (text, msg) in [
        ("FROM a\nCOPY --exclude=*.md . /\n", "COPY --exclude is not supported"),
        ("FROM a\nCOPY --parents a/b /\n", "COPY --parents is not supported"),
        ("FROM a\nCOPY --chwon=1 a /\n", "unknown flag: --chwon"),
        ("FROM a\nADD --from=x a /\n", "unknown flag: --from"),
        ("FROM a\nADD --checksum=sha256:00 u /\n", "ADD --checksum is not supported"),
        ("FROM a\nCOPY --link=maybe a /\n", "expecting boolean value for flag --link, not: maybe"),
        ("FROM a\nCOPY --link= a /\n", "missing a value on flag: --link"),
        (
            "FROM a\nCOPY onlyone\n",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined.",
        ),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
    assert_eq!(
        kinds("FROM a\nADD --link=false --chown=\"a b\" x y\n"),
        [Kind::Add(Copy {
            sources: vec![Source::Path(s("x"))],
            dest: s("y"),
            from: None,
            chown: Some(s("a b")),
            chmod: None,
            link: false,
        })]
    );
}

#[test]
fn env_label_arg_forms() {
    assert_eq!(
        kinds(
            "FROM a\nENV A=1 B=\"two words\" C='x y' D=e\\ f E=\nLABEL \"key with space\"=v version=1.0\nARG A B=2 C=\"3 4\"\nARG D=\n"
        ),
        [
            Kind::Env(vec![
                (s("A"), s("1")),
                (s("B"), s("\"two words\"")),
                (s("C"), s("'x y'")),
                (s("D"), s("e\\ f")),
                (s("E"), s("")),
            ]),
            Kind::Label(vec![
                (s("\"key with space\""), s("v")),
                (s("version"), s("1.0")),
            ]),
            Kind::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: None
                },
                ArgDecl {
                    name: s("B"),
                    default: Some(s("2"))
                },
                ArgDecl {
                    name: s("C"),
                    default: Some(s("\"3 4\""))
                },
            ]),
            Kind::Arg(vec![ArgDecl {
                name: s("D"),
                default: Some(s(""))
            }]),
        ]
    );
    assert_eq!(
        expanded("FROM a\nENV A=1 B=\"two words\" C='x $NAME' D=e\\ f G=\"$NAME\"$NAME\nLABEL \"key with space\"=v\nENV OLD legacy \"quoted\" $NAME\n"),
        [
            Kind::Env(vec![
                (s("A"), s("1")),
                (s("B"), s("two words")),
                (s("C"), s("x $NAME")),
                (s("D"), s("e f")),
                (s("G"), s("worldworld")),
            ]),
            Kind::Label(vec![(s("key with space"), s("v"))]),
            Kind::Env(vec![(s("OLD"), s("legacy quoted world"))]),
        ]
    );
    for (text, msg) in [
        ("FROM a\nENV\n", "ENV requires at least one argument"),
        ("FROM a\nENV ONLYKEY\n", "ENV must have two arguments"),
        (
            "FROM a\nENV A=1 B\n",
            "Syntax error - can't find = in \"B\". Must be of the form: name=value",
        ),
        ("FROM a\nENV =x\n", "ENV names can not be blank"),
        ("FROM a\nLABEL\n", "LABEL requires at least one argument"),
        ("FROM a\nARG\n", "ARG requires at least one argument"),
        ("FROM a\nARG =1\n", "ARG names can not be blank"),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
    let arg = ArgDecl {
        name: s("V"),
        default: Some(s("\"${TAG}-x\"")),
    };
    assert_eq!(
        arg.expand('\\', &vars),
        Ok(ArgDecl {
            name: s("V"),
            default: Some(s("3.19-x"))
        })
    );
}

#[test]
fn single_argument_instructions() {
    for (text, msg) in [
        ("FROM a\nUSER\n", "USER requires exactly one argument"),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
        (
            "FROM a\nSTOPSIGNAL\n",
            "STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM a\nMAINTAINER\n",
            "MAINTAINER requires exactly one argument",
        ),
        ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME\n", "VOLUME requires at least one argument"),
        (
            "FROM a\nVOLUME [\"\"]\n",
            "VOLUME specified can not be an empty string",
        ),
        ("FROM a\nUSER --x=1 root\n", "unknown flag: --x"),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
    // The whole rest of the line is the one argument.
    assert_eq!(
        kinds("FROM a\nWORKDIR /path with/spaces\nUSER 1000:1000\n"),
        [
            Kind::Workdir(s("/path with/spaces")),
            Kind::User(s("1000:1000")),
        ]
    );
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        kinds("FROM a\nHEALTHCHECK NONE\nHEALTHCHECK none\nHEALTHCHECK CMD [\"/bin/check\", \"-q\"]\nhealthcheck --retries=1 cmd true\n"),
        [
            Kind::Healthcheck(Healthcheck::None),
            Kind::Healthcheck(Healthcheck::None),
            Kind::Healthcheck(Healthcheck::Check {
                test: Command::Exec(sv(&["/bin/check", "-q"])),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            }),
            Kind::Healthcheck(Healthcheck::Check {
                test: Command::Shell(s("true")),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(s("1")),
            }),
        ]
    );
    for (text, msg) in [
        (
            "FROM a\nHEALTHCHECK\n",
            "HEALTHCHECK requires at least one argument",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x\n",
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK RUN x\n",
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
        ),
        (
            "FROM a\nHEALTHCHECK CMD\n",
            "Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK CMD []\n",
            "Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=10 CMD x\n",
            "time: missing unit in duration \"10\"",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=10us CMD x\n",
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=0 CMD x\n",
            "--retries must be at least 1 (not 0)",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=x CMD x\n",
            "strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "FROM a\nHEALTHCHECK --port=1 CMD x\n",
            "unknown flag: --port",
        ),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
}

#[test]
fn onbuild_refusals() {
    for (text, msg) in [
        (
            "FROM a\nONBUILD\n",
            "ONBUILD requires at least one argument",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM a\nONBUILD from b\n",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD MAINTAINER me\n",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("FROM a\nONBUILD BOGUS x\n", "unknown instruction: BOGUS"),
        (
            "FROM a\nONBUILD RUN --mount=x y\n",
            "RUN --mount is not supported",
        ),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line: 2,
                message: s(msg)
            },
            "{text}"
        );
    }
    // Deep nesting is refused, not recursed into.
    let deep = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(50_000));
    assert_eq!(err(&deep).line, 2);
    // ONBUILD is not substituted until it triggers.
    let got = one_stage("FROM a\nONBUILD WORKDIR $DIR\n");
    assert_eq!(got[0].expand('\\', &vars).unwrap(), got[0]);
}

#[test]
fn from_forms() {
    let df =
        parse("ARG TAG=3.19\nFROM --platform=${ARCH} alpine:${TAG} aS builder\nFROM builder\n")
            .unwrap();
    let (image, platform) = df.stages[0].expand_from('\\', &vars).unwrap();
    assert_eq!(
        (image.as_str(), platform.as_deref()),
        ("alpine:3.19", Some("linux/arm64"))
    );
    assert_eq!(df.stages[1].image, "builder");
    for (text, line, msg) in [
        ("FROM\n", 1, "FROM requires either one or three arguments"),
        ("FROM a b\n", 1, "FROM requires either one or three arguments"),
        ("FROM a AS b c\n", 1, "FROM requires either one or three arguments"),
        ("FROM a IS b\n", 1, "FROM requires either one or three arguments"),
        (
            "FROM a AS 1st\n",
            1,
            "invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
        ),
        ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name \"x\""),
        ("FROM --platform a\n", 1, "missing a value on flag: --platform"),
        ("FROM --pull a\n", 1, "unknown flag: --pull"),
    ] {
        assert_eq!(
            err(text),
            ParseError {
                line,
                message: s(msg)
            },
            "{text}"
        );
    }
    let df = parse("FROM ${UNSET}\n").unwrap();
    assert_eq!(
        df.stages[0].expand_from('\\', &vars),
        Err(ParseError {
            line: 1,
            message: s("base name (${UNSET}) should not be blank")
        })
    );
}

#[test]
fn error_lines() {
    // Unknown instruction, on the line it starts.
    assert_eq!(
        err("FROM a\n\n# note\nFOO bar\n"),
        ParseError {
            line: 4,
            message: s("unknown instruction: FOO")
        }
    );
    // An error in the 2nd line of a continued instruction names the first.
    assert_eq!(
        err("FROM a\nCOPY --chown=1 \\\n   --bogus=2 \\\n   a b\n"),
        ParseError {
            line: 2,
            message: s("unknown flag: --bogus")
        }
    );
    // Only ARG may precede FROM.
    assert_eq!(
        err("ARG X\nRUN echo\nFROM a\n"),
        ParseError {
            line: 2,
            message: s(
                "no build stage in current context: RUN comes before the first FROM (only ARG may)"
            )
        }
    );
    // Syntax errors of the first pass come before argument errors of the
    // second, wherever they are (as in Docker).
    assert_eq!(err("FROM a\nBOGUS\nRUN <<EOF\n").line, 3);
    assert_eq!(
        err(""),
        ParseError {
            line: 1,
            message: s("file with no instructions")
        }
    );
    assert_eq!(
        err("# only\n\n# comments\n"),
        ParseError {
            line: 3,
            message: s("file with no instructions")
        }
    );
    assert_eq!(
        err("ARG A\nARG B\n"),
        ParseError {
            line: 2,
            message: s("dockerfile contains no stages to build")
        }
    );
    assert_eq!(err("FROM a\r\nFOO\r\n").line, 2, "CRLF line endings");
    assert_eq!(
        err("FROM a\nBAD\n").to_string(),
        "line 2: unknown instruction: BAD"
    );
}

#[test]
fn substitution_of_each_instruction() {
    let text = "FROM a\n\
ADD --chown=${NAME} $DIR/a.txt ${DIR:-/x}/\n\
COPY --from=${NAME} --chmod=$EMPTY \"$NAME\" '$NAME' dst\n\
EXPOSE $SP 8080/udp\n\
VOLUME [\"$DIR/data\"]\n\
USER $NAME\n\
WORKDIR ${DIR}/sub\n\
STOPSIGNAL ${SIG:-SIGQUIT}\n\
RUN echo $NAME\n\
CMD echo $NAME\n\
MAINTAINER $NAME\n\
ARG X=$NAME\n";
    assert_eq!(
        expanded(text),
        [
            Kind::Add(Copy {
                sources: vec![Source::Path(s("/srv/app/a.txt"))],
                dest: s("/srv/app/"),
                from: None,
                chown: Some(s("world")),
                chmod: None,
                link: false,
            }),
            Kind::Copy(Copy {
                sources: vec![Source::Path(s("world")), Source::Path(s("$NAME"))],
                dest: s("dst"),
                from: Some(s("world")),
                chown: None,
                chmod: Some(s("")),
                link: false,
            }),
            Kind::Expose(sv(&["80", "443", "8080/udp"])),
            Kind::Volume(sv(&["/srv/app/data"])),
            Kind::User(s("world")),
            Kind::Workdir(s("/srv/app/sub")),
            Kind::StopSignal(s("SIGQUIT")),
            Kind::Run(Run {
                command: Command::Shell(s("echo $NAME")),
                heredocs: vec![],
                network: None,
            }),
            Kind::Cmd(Command::Shell(s("echo $NAME"))),
            Kind::Maintainer(s("$NAME")),
            Kind::Arg(vec![ArgDecl {
                name: s("X"),
                default: Some(s("$NAME")),
            }]),
        ]
    );
}

#[test]
fn substitution_errors_carry_the_line() {
    let got = one_stage(
        "FROM a\nRUN true\nWORKDIR \\\n  ${MISSING:?set MISSING}\nENV A=\"open\nVOLUME $EMPTY\n",
    );
    assert_eq!(
        got[1].expand('\\', &vars),
        Err(ParseError {
            line: 3,
            message: s("failed to process \"${MISSING:?set MISSING}\": MISSING: set MISSING")
        })
    );
    assert_eq!(
        got[2].expand('\\', &vars).unwrap_err(),
        ParseError {
            line: 5,
            message: s("failed to process \"\\\"open\": unexpected end of statement while looking for matching double-quote")
        }
    );
    assert_eq!(
        got[3].expand('\\', &vars).unwrap_err().message,
        "VOLUME specified can not be an empty string"
    );
}

#[test]
fn text_is_the_instruction_as_written() {
    let got = one_stage("FROM a\n  run   echo a \\\n   # c\n      && echo b\n");
    assert_eq!(got[0].text, "run   echo a && echo b");
    assert_eq!(got[0].line, 2);
}

#[test]
fn unicode_and_odd_whitespace() {
    assert_eq!(
        kinds("FROM a\nLABEL café=\"naïve ☕\"\nRUN\techo\t☕\n"),
        [
            Kind::Label(vec![(s("café"), s("\"naïve ☕\""))]),
            Kind::Run(Run {
                command: Command::Shell(s("echo\t☕")),
                heredocs: vec![],
                network: None
            }),
        ]
    );
}
