package main

import (
	"fmt"
	"strconv"
	"syscall"
	"time"
)

func checkpointCmd(args []string) (int, error) {
	fs := newFlags("checkpoint", "[--wait] [--kill] [--compress] PID", `Asks process PID, which runs libckpt.so, for a checkpoint.  With --wait,
waits until the new image is complete and prints its path; with --kill, then
kills the process (like dmtcp_command -kc).  With --compress, this image is
zstd-compressed (the option travels as the value of the queued signal; a
request that arrives while a checkpoint is being written is served after it,
without its options).

Examples:
  ckpt checkpoint --wait 4242
  ckpt checkpoint --kill 4242    # checkpoint, then stop the job`)
	wait := fs.Bool("wait", false, "wait for the image and print its path")
	kill := fs.Bool("kill", false, "kill the process once the image is written (implies --wait)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the image")
	compress := fs.Bool("compress", false, "compress this image (zstd)")
	arg, err := oneArg(fs, args, "PID")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(arg)
	if err != nil || pid <= 0 {
		return 0, usageError{fmt.Sprintf("%q is not a process ID", arg)}
	}
	t, err := findTarget(pid)
	if err != nil {
		return 0, err
	}
	var options int32
	if *compress {
		options |= reqCompress
	}
	if err := t.checkpoint(options, *wait || *kill, *timeout); err != nil {
		return 0, err
	}
	if *wait || *kill {
		fmt.Println(t.image)
	}
	if *kill {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return 0, fmt.Errorf("killing process %d: %w", pid, err)
		}
	}
	return 0, nil
}
