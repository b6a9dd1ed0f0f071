"""go_module_archive: fetch a Bazel rule set that is published as a Go module.

Bazel 4.2.3 (Debian's bazel-bootstrap) cannot download from GitHub here; the
only reachable source of rules_go / gazelle is the Go module proxy. This rule

  1. runs `go mod download -json MODULE@VERSION` in a scratch module, using the
     proxy / sumdb / module cache that `go env` reports at fetch time (nothing
     host-specific is committed; --repo_env=GOPROXY=... overrides),
  2. copies the module directory (read-only in the module cache) into the
     repository and makes it writable,
  3. optionally runs `go mod vendor` (gazelle <= 0.28 builds its repository
     tools in GOPATH mode from vendor/, which module zips do not contain),
  4. applies `patches` with `patch -p1`, in order.
"""

def _go_env(ctx, go, names):
    res = ctx.execute([go, "env"] + names)
    if res.return_code:
        fail("`go env` failed: " + res.stderr)
    values = res.stdout.split("\n")
    return {name: values[i].strip() for i, name in enumerate(names)}

def _run(ctx, args, env, what, working_directory = ""):
    res = ctx.execute(args, environment = env, working_directory = working_directory, timeout = 1200, quiet = True)
    if res.return_code:
        fail("%s failed (%d):\n%s\n%s" % (what, res.return_code, res.stdout, res.stderr))
    return res

def _go_module_archive_impl(ctx):
    go = ctx.attr.go
    if not go:
        go = str(ctx.which("go") or "/usr/local/go/bin/go")

    # Values from `go env` (environment, $GOROOT/go.env, ~/.config/go/env);
    # an explicit --repo_env wins.
    genv = _go_env(ctx, go, ["GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOMODCACHE"])
    env = {k: ctx.os.environ.get(k, v) for k, v in genv.items()}
    env.update({
        "GOFLAGS": "-mod=mod",
        "GO111MODULE": "on",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
    })

    module = "%s@%s" % (ctx.attr.module, ctx.attr.version)
    ctx.report_progress("go mod download " + module)
    ctx.file("_scratch/go.mod", "module scratch\n")
    res = _run(ctx, [go, "mod", "download", "-json", module], env, "go mod download " + module, "_scratch")

    # Minimal JSON scrape: we only need "Dir".
    src = None
    for line in res.stdout.split("\n"):
        line = line.strip()
        if line.startswith('"Dir":'):
            src = line[len('"Dir":'):].strip().rstrip(",").strip('"')
        if line.startswith('"Error":'):
            fail("go mod download %s: %s" % (module, line))
    if not src:
        fail("go mod download %s reported no Dir:\n%s" % (module, res.stdout))

    _run(ctx, ["rm", "-rf", "_scratch"], env, "cleanup")
    _run(ctx, ["cp", "-R", src + "/.", "."], env, "copy " + src)
    _run(ctx, ["chmod", "-R", "u+w", "."], env, "chmod")

    if ctx.attr.vendor:
        ctx.report_progress("go mod vendor " + module)
        _run(ctx, [go, "mod", "vendor"], env, "go mod vendor in " + module)

    for patch in ctx.attr.patches:
        ctx.report_progress("patch " + patch.name)
        _run(ctx, ["patch", "-p1", "-i", str(ctx.path(patch))], env, "patch " + str(patch))

go_module_archive = repository_rule(
    implementation = _go_module_archive_impl,
    attrs = {
        "module": attr.string(mandatory = True, doc = "Go module path"),
        "version": attr.string(mandatory = True, doc = "Module version (vX.Y.Z)"),
        "vendor": attr.bool(default = False, doc = "Run `go mod vendor` after download"),
        "patches": attr.label_list(allow_files = True, doc = "Applied with patch -p1, in order"),
        "go": attr.string(doc = "go binary; default: `go` on PATH, else /usr/local/go/bin/go"),
    },
    environ = ["GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOMODCACHE", "PATH"],
    doc = "A Bazel rule set fetched through the Go module proxy (see third_party/README.md).",
)
