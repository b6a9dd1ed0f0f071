"""ckpt_e2e_test: one real checkpoint/kill/restart round trip of a program."""

def ckpt_e2e_test(name, prog, args = [], data = [], size = "medium", **kwargs):
    """Runs prog under //:libckpt.so, checkpoints it, kills it, restarts it.

    See roundtrip_test.sh for what is checked.

    Args:
      name: the test's name.
      prog: a label of an executable, or an absolute path of a system one.
      args: the program's arguments (the first is usually the tick in ms).
      data: files the program needs.
      size: the test size.
      **kwargs: passed to sh_test.
    """
    data = ["//:libckpt.so", "//:restart", "//tests:testlib.sh"] + data
    if prog.startswith("//") or prog.startswith(":"):
        prog_arg = "$(location %s)" % prog
        data.append(prog)
    else:
        prog_arg = prog
    native.sh_test(
        name = name,
        size = size,
        srcs = ["//tests:roundtrip_test.sh"],
        args = ["$(location //:libckpt.so)", "$(location //:restart)", prog_arg] + args,
        data = data,
        **kwargs
    )
