# Loaded by every IPython kernel as it starts, in the kernel's own process. When a server
# reaches its memory limit, Linux's OOM killer must pick the kernel, not the notebook
# server: the server then restarts the kernel and the user sees "kernel died", instead of
# the whole server vanishing (seen at 128M: the server was killed without this). Raising
# one's own oom_score_adj needs no privilege.
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
except OSError:
    pass
