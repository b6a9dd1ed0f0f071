"""Test rules: a script run with the paths of what it tests as arguments."""

def ckpt_sh_test(name, script, path_args, extra_args = [], data = [], size = "medium", **kwargs):
    """Runs script with the paths of path_args (in order), then extra_args.

    Every test script sources testlib.sh; path_args are also its data.
    (Not named "tools": buildifier, which gazelle runs, sorts such a list.)

    Args:
      name: the test's name.
      script: the test script.
      path_args: labels of the binaries and files the script gets, in order.
      extra_args: arguments after those paths.
      data: further files the test needs.
      size: the test size.
      **kwargs: passed to sh_test.
    """
    native.sh_test(
        name = name,
        size = size,
        srcs = [script],
        args = ["$(location %s)" % t for t in path_args] + extra_args,
        data = ["//tests:testlib.sh"] + path_args + data,
        **kwargs
    )

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
    path_args = ["//:libckpt.so", "//:restart"]
    if prog.startswith("//") or prog.startswith(":"):
        path_args.append(prog)
    else:
        args = [prog] + args
    ckpt_sh_test(
        name = name,
        script = "//tests:roundtrip_test.sh",
        path_args = path_args,
        extra_args = args,
        data = data,
        size = size,
        **kwargs
    )
