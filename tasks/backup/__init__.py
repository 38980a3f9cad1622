"""Backup and restore of users' volumes and the hub's data: `inv backup`, `inv restore`.

Everything moves through the Docker archive API on the volume's helper container, which
is also the lock: the engine streams the volume's tar to us (with the sparse files a
survey of the volume finds first left out), we check and hash it entry by entry and write
our archive straight to a file; a restore checks the whole archive, then
streams it back the same way and swaps it into place. Nothing runs tar in a container, no
archive is held in memory, and nothing but the engine's API is needed.

    commands    the two tasks, their flags and config, the backup folder they name
    targets     the deployment (read once per task) and the volumes it works on
    writing     a backup: volume -> archive file (and the hub database's snapshot)
    restoring   a restore: check everything, then archive -> volume, then swap
    store       the backup folder: names, checksum files, leftovers, listing, progress
    archive     the archive format: layout, entries, metadata, writing one
    reading     reading one back: every check, and the stream a restore sends
    tarstream   the strict tar reader: the engine's tar in a backup, ours in a restore
    rules       the rules every entry follows: paths, order, links
    streams     byte streams: no copies, hashing and file I/O in threads
    helper      the helper container: the lock, the engine's streams, the swap's run; the
                survey's container, and the reader that covers sparse files
    survey      run in a container before a backup: the data the files hold, sparse files
                (stdlib only), and its findings read back
    swap        run inside the helper: finishes or undoes a restore (stdlib only)
    snapshot    run inside the hub: copies its SQLite database consistently (stdlib only)

Only `commands` is imported to list the tasks; the tasks import the rest when they run.
"""
