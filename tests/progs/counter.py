"""counter.py: a real interpreter's loop, checkpointed and restarted."""
import time

i = 0
while True:
    i += 1
    print(i, flush=True)
    time.sleep(0.2)
