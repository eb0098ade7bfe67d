//! The server name `toolgate run` picks when `--name` is not given.
//!
//! The name keys the server's pins, audit records and approvals, so it must be stable from
//! one start to the next and distinct between servers. A command's file name is neither
//! when the command is a launcher: every server started with `npx`, `node`, `uvx` or
//! `docker` would share one pin namespace. For a launcher the name comes from what it
//! launches: the package (`npx -y @scope/server-x@1.2` → `server-x`), the module
//! (`python -m mcp_server_fetch`), the image (`docker run -i --rm mcp/fetch` → `fetch`) or
//! the script (`node /a/server-memory/dist/index.js` → `server-memory`).

use std::path::{Component, Path, PathBuf};

/// The name when nothing better is found.
const FALLBACK: &str = "stdio";

/// How a launcher names what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An npm package spec: `@scope/name@version`.
    Npm,
    /// A Python package spec: `name==1.0`, `name[extra]@1.0`, `git+https://…/name.git`.
    Python,
    /// A script file (`node`, `deno`, `python`, `sh`…), or `-m MODULE` for Python.
    Script,
    /// A container image: `registry/path/name:tag@sha256:…`.
    Image,
}

/// A launcher: what its first positional argument is, which of its flags take a value,
/// and which leading words are subcommands (`uv tool run`, `docker run`).
struct Launcher {
    kind: Kind,
    valued: &'static [&'static str],
    subcommands: &'static [&'static str],
}

fn launcher(program: &str) -> Option<Launcher> {
    let l = |kind, valued, subcommands| {
        Some(Launcher {
            kind,
            valued,
            subcommands,
        })
    };
    match program {
        "npx" | "pnpx" | "bunx" => l(
            Kind::Npm,
            &["-p", "--package", "--cache", "--registry", "--userconfig"],
            &[],
        ),
        "npm" | "pnpm" | "yarn" => l(
            Kind::Npm,
            &["-p", "--package", "--cache", "--registry", "--prefix"],
            &["exec", "x", "dlx"],
        ),
        "bun" => l(
            Kind::Script,
            &["--cwd", "-r", "--preload", "--config", "-c"],
            &["run", "x"],
        ),
        "node" | "nodejs" | "tsx" | "ts-node" => l(
            Kind::Script,
            &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
                "--env-file",
                "--title",
                "--conditions",
                "-C",
                "-e",
                "--eval",
                "-p",
                "--print",
            ],
            &[],
        ),
        "deno" => l(
            Kind::Script,
            &["--config", "-c", "--import-map", "--env-file", "--location"],
            &["run"],
        ),
        "uvx" | "pipx" => l(
            Kind::Python,
            &[
                "--from",
                "--with",
                "-w",
                "--python",
                "-p",
                "--index-url",
                "--index",
                "--spec",
            ],
            &["run"],
        ),
        "uv" => l(
            Kind::Script,
            &[
                "--with",
                "-w",
                "--from",
                "--directory",
                "--project",
                "--python",
                "-p",
                "--index-url",
                "--index",
                "--env-file",
                "--package",
            ],
            &["run", "tool"],
        ),
        "docker" | "podman" | "nerdctl" => l(
            Kind::Image,
            &[
                "-e",
                "--env",
                "--env-file",
                "-v",
                "--volume",
                "--mount",
                "--name",
                "-p",
                "--publish",
                "--network",
                "--net",
                "-w",
                "--workdir",
                "-u",
                "--user",
                "--entrypoint",
                "--platform",
                "-l",
                "--label",
                "-h",
                "--hostname",
                "--add-host",
                "--cap-add",
                "--cap-drop",
                "--security-opt",
                "--memory",
                "-m",
                "--cpus",
                "--pull",
                "--runtime",
                "--device",
                "--tmpfs",
                "--ulimit",
                "--log-driver",
                "--restart",
                "--dns",
                "--gpus",
                "--shm-size",
                "--context",
                "--host",
                "-H",
            ],
            &["run", "container"],
        ),
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "fish" => l(Kind::Script, &["-o", "-O"], &[]),
        _ if is_python(program) => l(Kind::Script, &["-W", "-X", "-c"], &[]),
        _ => None,
    }
}

fn is_python(program: &str) -> bool {
    let rest = program
        .strip_prefix("python")
        .or_else(|| program.strip_prefix("pypy"));
    rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The name for `command` (the program and its arguments), started in `cwd`.
pub fn derive(command: &[String], cwd: &Path) -> String {
    derive_raw(command, cwd, 0)
        .map(|n| sanitize(&n))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| FALLBACK.into())
}

fn derive_raw(command: &[String], cwd: &Path, depth: u8) -> Option<String> {
    let (program, args) = command.split_first()?;
    let program = program_name(program);
    if program == "env" && depth < 4 {
        // `env [-i] [A=B…] CMD ARGS`: the command after the settings.
        let at = args
            .iter()
            .position(|a| !a.starts_with('-') && !a.contains('='))?;
        return derive_raw(&args[at..], cwd, depth + 1);
    }
    let Some(l) = launcher(&program) else {
        return Some(program);
    };
    if l.kind == Kind::Script && is_shell(&program) {
        if let Some(i) = args.iter().position(|a| is_shell_c(a)) {
            // `sh -c "exec npx -y pkg"`: the command in the string.
            let Some(line) = args.get(i + 1) else {
                return Some(program);
            };
            let words: Vec<String> = line
                .split_whitespace()
                .filter(|w| *w != "exec")
                .map(str::to_string)
                .collect();
            if depth < 4 {
                return derive_raw(&words, cwd, depth + 1).or(Some(program));
            }
            return Some(program);
        }
    }
    let mut i = 0;
    let mut leading = true;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            leading = false;
            continue;
        }
        if a.starts_with('-') && a.len() > 1 && leading {
            if l.kind == Kind::Script && a == "-m" && is_python(&program) {
                return Some(args.get(i).map_or(program, |m| module_name(m)));
            }
            if a.contains('=') {
                continue;
            }
            if l.valued.contains(&a.as_str()) {
                i += 1;
            }
            continue;
        }
        if leading && l.subcommands.contains(&a.as_str()) {
            continue;
        }
        return Some(match l.kind {
            Kind::Npm => npm_name(a),
            Kind::Python => python_name(a),
            Kind::Image => image_name(a),
            Kind::Script if program == "uv" && !looks_like_file(a) => {
                // `uv run mcp-server-x` runs an installed command, not a file.
                python_name(a)
            }
            Kind::Script if program == "bun" && !looks_like_file(a) => npm_name(a),
            Kind::Script => script_name(a, cwd),
        });
    }
    Some(program)
}

/// The program's file name, without a Windows extension.
fn program_name(program: &str) -> String {
    // `\\` too: a Windows client's config read on any system.
    let base = program.rsplit(['/', '\\']).next().unwrap_or(program);
    for ext in [".exe", ".cmd", ".bat"] {
        if let Some(stem) = base.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    base.to_string()
}

fn is_shell(program: &str) -> bool {
    matches!(program, "sh" | "bash" | "zsh" | "dash" | "ksh" | "fish")
}

/// `-c`, or a cluster of short flags holding `c` (`-lc`, `-ec`).
fn is_shell_c(a: &str) -> bool {
    a.strip_prefix('-')
        .is_some_and(|f| !f.starts_with('-') && f.contains('c'))
}

fn looks_like_file(a: &str) -> bool {
    a.contains('/')
        || a.contains('\\')
        || [".js", ".mjs", ".cjs", ".ts", ".mts", ".py", ".sh", ".jar"]
            .iter()
            .any(|e| a.ends_with(e))
}

/// `@scope/name@1.2` → `name`; `name@latest` → `name`; `github:me/repo` → `repo`.
fn npm_name(spec: &str) -> String {
    let spec = spec.trim_end_matches('/');
    let unscoped = match spec.strip_prefix('@') {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, name)| name),
        None => spec,
    };
    let name = unscoped.split('@').next().unwrap_or(unscoped);
    let name = name.rsplit(['/', ':']).next().unwrap_or(name);
    name.strip_suffix(".git").unwrap_or(name).to_string()
}

/// `mcp-server-git==1.0` → `mcp-server-git`; `pkg[extra]@1.0` → `pkg`;
/// `git+https://host/me/repo.git` → `repo`.
fn python_name(spec: &str) -> String {
    let spec = spec.trim_end_matches('/');
    if spec.contains("://") {
        let last = spec.rsplit('/').next().unwrap_or(spec);
        let last = last.split('@').next().unwrap_or(last);
        return last.strip_suffix(".git").unwrap_or(last).to_string();
    }
    let end = spec
        .find(['=', '<', '>', '~', '!', '[', '@', ';', ' '])
        .unwrap_or(spec.len());
    spec.get(..end).unwrap_or(spec).to_string()
}

/// `ghcr.io/org/name:1.0@sha256:…` → `name`.
fn image_name(spec: &str) -> String {
    let spec = spec.split('@').next().unwrap_or(spec);
    let last = spec.rsplit('/').next().unwrap_or(spec);
    last.split(':').next().unwrap_or(last).to_string()
}

/// Module paths whose last part says nothing: `pkg.server` → `pkg`.
const GENERIC_STEMS: &[&str] = &[
    "index", "main", "server", "cli", "app", "__main__", "mod", "run", "start", "entry", "stdio",
];

/// Build and source folders between a package and its entry point.
const GENERIC_DIRS: &[&str] = &[
    "dist", "build", "lib", "src", "out", "bin", "esm", "cjs", "target", "release", "debug",
];

/// `pkg.sub.server` → `sub`; `mcp_server_fetch` → `mcp_server_fetch`.
fn module_name(module: &str) -> String {
    module
        .split('.')
        .rev()
        .find(|p| !p.is_empty() && !GENERIC_STEMS.contains(p))
        .or_else(|| module.split('.').next())
        .unwrap_or(module)
        .to_string()
}

/// A script's name: its file stem unless generic (`index.js`, `server.py`), else the folder
/// of its package (holding `package.json`, `pyproject.toml`, `deno.json`…), else the nearest
/// folder that is not a build folder (`/a/server-memory/dist/index.js` → `server-memory`).
fn script_name(script: &str, cwd: &Path) -> String {
    let path = Path::new(script);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `node` on a folder runs its package.
    let stem = stem.split('.').next().unwrap_or(&stem).to_string();
    if !stem.is_empty() && !GENERIC_STEMS.contains(&stem.as_str()) {
        return stem;
    }
    let full = normalize(&cwd.join(path));
    let folders: Vec<String> = full
        .ancestors()
        .skip(1)
        .take(6)
        .filter_map(|d| {
            let name = d.file_name()?.to_string_lossy().into_owned();
            let is_package = ["package.json", "pyproject.toml", "setup.py", "deno.json"]
                .iter()
                .any(|m| d.join(m).is_file());
            is_package.then_some(name)
        })
        .collect();
    if let Some(package) = folders.into_iter().next() {
        return package;
    }
    full.ancestors()
        .skip(1)
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .find(|n| !GENERIC_DIRS.contains(&n.as_str()))
        .unwrap_or(stem)
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Letters, digits, `-` and `_` (others become `-`), no leading or trailing `-`, at most 64.
fn sanitize(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.trim_matches('-').chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(cmd: &str) -> String {
        name_in(cmd, Path::new("/nonexistent/cwd"))
    }

    fn name_in(cmd: &str, cwd: &Path) -> String {
        let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        derive(&words, cwd)
    }

    #[test]
    fn npm_launchers_name_the_package() {
        assert_eq!(
            name("npx -y @modelcontextprotocol/server-filesystem /tmp"),
            "server-filesystem"
        );
        assert_eq!(
            name("npx --yes @modelcontextprotocol/server-github@2025.4.8"),
            "server-github"
        );
        assert_eq!(name("npx @scope/pkg@1.0"), "pkg");
        assert_eq!(
            name("npx mcp-remote@latest https://x.example/mcp"),
            "mcp-remote"
        );
        assert_eq!(name("/usr/local/bin/npx -y firecrawl-mcp"), "firecrawl-mcp");
        assert_eq!(name("npx.cmd -y @upstash/context7-mcp"), "context7-mcp");
        assert_eq!(name("bunx @scope/tool-server"), "tool-server");
        assert_eq!(name("pnpm dlx @scope/tool-server@3"), "tool-server");
        assert_eq!(name("npm exec -y -- @scope/x-mcp"), "x-mcp");
        assert_eq!(name("npx -p @scope/pkg pkg-bin --flag"), "pkg-bin");
        assert_eq!(name("npx github:someone/some-mcp"), "some-mcp");
    }

    #[test]
    fn python_launchers_name_the_package_or_module() {
        assert_eq!(name("uvx mcp-server-git --repository ."), "mcp-server-git");
        assert_eq!(name("uvx mcp-server-fetch==0.6.2"), "mcp-server-fetch");
        assert_eq!(name("uvx --from mcp-pkg mcp-cmd"), "mcp-cmd");
        assert_eq!(
            name("uvx --python 3.12 mcp-server-time@2025.1"),
            "mcp-server-time"
        );
        assert_eq!(name("uv tool run mcp-server-sqlite"), "mcp-server-sqlite");
        assert_eq!(
            name("uv --directory /src/weather run weather.py"),
            "weather"
        );
        assert_eq!(name("uv run --with mcp mcp-server-x"), "mcp-server-x");
        assert_eq!(name("pipx run mcp-thing[cli]"), "mcp-thing");
        assert_eq!(name("python -m mcp_server_fetch"), "mcp_server_fetch");
        assert_eq!(name("python3 -m mcp_server_git --repo ."), "mcp_server_git");
        assert_eq!(name("python3.12 -u -m weather.server"), "weather");
        assert_eq!(name("python /home/me/tools/notes.py"), "notes");
        assert_eq!(name("uvx git+https://github.com/me/my-mcp.git"), "my-mcp");
    }

    #[test]
    fn scripts_name_their_package_folder() {
        assert_eq!(name("node /a/server-memory/dist/index.js"), "server-memory");
        assert_eq!(name("node /x/y/build/index.js"), "y");
        assert_eq!(name("node --enable-source-maps /x/weather.mjs"), "weather");
        assert_eq!(name("node -r dotenv/config /p/srv/lib/main.js"), "srv");
        assert_eq!(name("deno run -A /srv/deno-mcp/main.ts"), "deno-mcp");
        assert_eq!(name("bun run /w/bun-mcp/src/index.ts"), "bun-mcp");
        assert_eq!(name("sh /opt/mcp-alpha/run.sh"), "mcp-alpha");
        assert_eq!(name("node dist/index.js"), "cwd");
        assert_eq!(name("node ./../other/dist/index.js"), "other");
    }

    #[test]
    fn a_package_json_marks_the_package_folder() {
        let dir = std::env::temp_dir().join(format!("toolgate-name-{}", std::process::id()));
        let pkg = dir.join("my-server");
        std::fs::create_dir_all(pkg.join("packages/core/out")).unwrap();
        std::fs::write(pkg.join("package.json"), "{}").unwrap();
        assert_eq!(
            name_in("node my-server/packages/core/out/index.js", &dir),
            "my-server"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_name_the_image() {
        assert_eq!(name("docker run -i --rm mcp/fetch"), "fetch");
        assert_eq!(
            name("docker run -i --rm -e GITHUB_TOKEN ghcr.io/github/github-mcp-server:v1 stdio"),
            "github-mcp-server"
        );
        assert_eq!(
            name("docker run -i --rm -v /a:/b --name x --env=A=1 mcp/filesystem@sha256:abc /b"),
            "filesystem"
        );
        assert_eq!(name("podman container run -i img/thing:latest"), "thing");
    }

    #[test]
    fn shells_and_env_name_the_command_inside() {
        let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cwd = Path::new("/");
        assert_eq!(
            derive(&words(&["sh", "-c", "exec npx -y @scope/pkg-a"]), cwd),
            "pkg-a"
        );
        assert_eq!(
            derive(&words(&["bash", "-lc", "uvx mcp-server-b"]), cwd),
            "mcp-server-b"
        );
        assert_eq!(
            derive(&words(&["env", "A=1", "B=2", "npx", "-y", "srv-c"]), cwd),
            "srv-c"
        );
    }

    #[test]
    fn other_commands_keep_their_file_name() {
        assert_eq!(name("mcp-server-git --repository ."), "mcp-server-git");
        assert_eq!(
            name("/usr/local/bin/github-mcp-server stdio"),
            "github-mcp-server"
        );
        assert_eq!(name("toolgate demo --stdio"), "toolgate");
        assert_eq!(name(r"C:\tools\srv.exe"), "srv");
    }

    #[test]
    fn launchers_alone_and_odd_names_stay_valid() {
        assert_eq!(name("npx"), "npx");
        assert_eq!(name("npx -y"), "npx");
        assert_eq!(name("python"), "python");
        assert_eq!(name("npx @"), "stdio");
        assert_eq!(name("node ./srv.v2.js"), "srv");
        assert_eq!(name("npx weird!name@1"), "weird-name");
        let long = format!("npx {}", "a".repeat(100));
        assert_eq!(name(&long).len(), 64);
        for cmd in [
            "npx",
            "node /",
            "sh -c",
            "docker run",
            "env A=1",
            "python -m",
        ] {
            assert!(toolgate_gateway::config::valid_name(&name(cmd)), "{cmd}");
        }
    }
}
