#!/bin/sh
# Start the inner Docker engine (when the image has one: Dockerfile.bare's gets it from
# `-H host deploy`), then serve SSH in the foreground.
set -eu

# The engine must write cgroups and /sys for its containers; without these remounts
# every inner container fails with "read-only file system".
mount -o remount,rw /sys
for dir in /sys/fs/cgroup /sys/fs/cgroup/*; do
    if mountpoint -q "$dir"; then
        mount -o remount,bind,rw "$dir"
    fi
done
# cgroup v2 only (this VM is v1): a cgroup holding processes cannot hand controllers
# to child cgroups, so move ourselves to a leaf first and then delegate them all.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/entrypoint
    while read -r pid; do
        echo "$pid" >/sys/fs/cgroup/entrypoint/cgroup.procs 2>/dev/null || true
    done </sys/fs/cgroup/cgroup.procs
    for controller in $(cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$controller" >/sys/fs/cgroup/cgroup.subtree_control
    done
fi

# A new key on every start: re-creating the container is how a test gets a changed key.
rm -f /etc/ssh/ssh_host_*
ssh-keygen -A
# The home of the user the tests log in as: root's, or admin's on a bare host.
home=${SSH_USER_HOME:-/root}
if [ ! -s "$home/.ssh/authorized_keys" ]; then
    echo "remote-host: $home/.ssh/authorized_keys is missing; copy it in before start" >&2
    exit 1
fi
chmod 0700 "$home/.ssh"
chmod 0600 "$home/.ssh/authorized_keys"
mkdir -p /run/sshd

if ! command -v dockerd >/dev/null 2>&1; then
    exec /usr/sbin/sshd -D -e
fi

dockerd >/var/log/dockerd.log 2>&1 &
deadline=$(( $(date +%s) + 60 ))
until docker info >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "remote-host: dockerd did not answer within 60 s; end of its log:" >&2
        tail -n 50 /var/log/dockerd.log >&2
        exit 1
    fi
    sleep 0.2
done
echo "remote-host: dockerd is ready"

exec /usr/sbin/sshd -D -e
