"""Profiles at spawn time: which a user may start, the choice in the browser, and what the
chosen one sets on their server (image, limits, a GPU, the group folders), enforced here on
the hub whatever a request says.

`inv up` checks profiles.toml and userlist and hands the hub the result as JSON
(HUB_PROFILES, tasks/profiles.py); the groups a user is in come from the hub's own groups,
which `inv up` keeps equal to userlist (tasks/groups.py), each with its instructors in the
group's properties. So a change of group takes effect at the user's next start.

The only option a spawn request may carry is `profile`, one the user's groups allow. Any
other option (an `image`, a limit), an unknown or forbidden profile, is refused with 403
before anything starts: the choice cannot name an image (CVE-2023-48311). A start with no
options (the admin panel's, a REST call without a body, a user with one profile) gets the
user's default: options are never remembered, so a profile taken away is not reused.
"""
import html
import json

LABEL = "org.jupyterhub-deploy"
INSTRUCTORS = "instructors"  # the group property tasks/groups.py keeps


class Refused(Exception):
    """A spawn request the user may not make; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def load_catalog(text: str) -> dict:
    """The catalog `inv up` made; a hub started without a sound one refuses to start."""
    try:
        catalog = json.loads(text)
        names = [p["name"] for p in catalog["profiles"]]
        everyone = [p for p in catalog["profiles"] if p["everyone"]]
        catalog["shares"]  # noqa: B018
    except (ValueError, KeyError, TypeError):
        raise SystemExit("HUB_PROFILES is not what `inv up` writes: start the hub with `inv up`.")
    if len(everyone) != 1 or len(set(names)) != len(names):
        raise SystemExit("HUB_PROFILES has no single default profile: start the hub with `inv up`.")
    return catalog


def memberships(user_name: str, groups) -> tuple:
    """(groups the user is in, groups they are an instructor of), from the hub's groups
    (objects with `name` and `properties`)."""
    member, teaches = set(), set()
    for group in groups:
        member.add(group.name)
        if user_name in ((group.properties or {}).get(INSTRUCTORS) or []):
            teaches.add(group.name)
    return member, teaches


def allowed(catalog: dict, member: set) -> list:
    """The profiles a user in these groups may start, in the file's order."""
    return [p for p in catalog["profiles"] if p["everyone"] or member & set(p["groups"])]


def default_for(catalog: dict, member: set) -> dict:
    """The user's default: the first profile one of their groups has that can start here,
    else the one everyone may use."""
    for profile in allowed(catalog, member):
        if not profile["everyone"] and not profile["unavailable"]:
            return profile
    return next(p for p in catalog["profiles"] if p["everyone"])


def choose(catalog: dict, member: set, options) -> dict:
    """The profile a spawn request gets; raises Refused for anything else it asks."""
    if not isinstance(options, dict):
        raise Refused(400, "Spawn options must be a JSON object like {\"profile\": \"NAME\"}.")
    others = sorted(str(key) for key in options if key != "profile")
    if others:
        raise Refused(403, f"Only a profile can be chosen here, not {', '.join(others)}.")
    if "profile" not in options:
        return default_for(catalog, member)
    name = options["profile"]
    mine = {p["name"]: p for p in allowed(catalog, member)}
    if not isinstance(name, str) or name not in mine:
        shown = name if isinstance(name, str) else type(name).__name__
        raise Refused(403, f"You may not start profile {shown[:60]!r}; yours: "
                           f"{', '.join(mine)}.")
    if mine[name]["unavailable"]:
        raise Refused(403, f"Profile {name} cannot start on this host: it "
                           f"{mine[name]['unavailable']}.")
    return mine[name]


def share_mounts(catalog: dict, member: set, teaches: set) -> dict:
    """DockerSpawner volumes for the group folders of the user's groups: writable for the
    group's instructors (or everyone, when the file says so), read-only for the others."""
    mounts = {}
    for share in catalog["shares"]:
        if share["group"] in member:
            writes = share["writable"] == "everyone" or share["group"] in teaches
            mounts[share["volume"]] = {"bind": share["path"], "mode": "rw" if writes else "ro"}
    return mounts


def host_config(base: dict, profile: dict) -> dict:
    """The server's host config: the hardening and process limit of `base`, with the
    profile's memory (swap included) and its GPUs, and nothing of another profile's."""
    config = {k: v for k, v in base.items()
              if k not in ("memswap_limit", "pids_limit", "device_requests")}
    if profile["mem_bytes"]:
        config["memswap_limit"] = profile["mem_bytes"]
    if profile["pids"]:
        config["pids_limit"] = profile["pids"]
    if profile["gpus"]:
        config["device_requests"] = [{"count": profile["gpus"], "capabilities": [["gpu"]]}]
    return config


def describe_limits(profile: dict) -> str:
    parts = []
    if profile["mem_bytes"]:
        gib = profile["mem_bytes"] / (1 << 30)
        parts.append(f"{gib:g} GB memory" if gib >= 1 else f"{profile['mem_bytes'] >> 20} MB memory")
    if profile["cpus"]:
        parts.append(f"{profile['cpus']:g} CPU{'s' if profile['cpus'] != 1 else ''}")
    if profile["gpus"]:
        parts.append("all GPUs" if profile["gpus"] < 0 else
                     f"{profile['gpus']} GPU{'s' if profile['gpus'] > 1 else ''}")
    return ", ".join(parts)


def form(catalog: dict, member: set) -> str:
    """The choice on /hub/spawn, or "" when there is nothing to choose (one profile): then
    the hub starts the server at once, as without profiles."""
    profiles = allowed(catalog, member)
    if len(profiles) < 2:
        return ""
    chosen = default_for(catalog, member)["name"]
    rows = []
    for p in profiles:
        name, off = html.escape(p["name"]), bool(p["unavailable"])
        note = f" <em>(cannot start here: it {html.escape(p['unavailable'])})</em>" if off else ""
        rows.append(
            f'<div class="form-check mb-2">'
            f'<input class="form-check-input" type="radio" name="profile" id="profile-{name}" '
            f'value="{name}"{" checked" if p["name"] == chosen else ""}{" disabled" if off else ""}>'
            f'<label class="form-check-label" for="profile-{name}">'
            f'<strong>{name}</strong> {html.escape(p["description"])}'
            f' <small class="text-muted">{html.escape(describe_limits(p))}</small>{note}'
            f'</label></div>')
    return ('<fieldset id="jupyterhub-deploy-profiles"><legend>Choose an environment</legend>'
            + "".join(rows) + "</fieldset>")


def options_from_form(formdata: dict) -> dict:
    """Form fields as user options, one value each; checked with the REST API's in
    apply_user_options, the one place that decides. The page's XSRF token is no option."""
    return {key: values[0] if len(values) == 1 else values
            for key, values in formdata.items() if key != "_xsrf"}


class Hooks:
    """The spawner settings that carry the profiles, bound to the catalog and to what the
    configuration gives every server (its host config and its user volume)."""

    def __init__(self, catalog: dict, base_host_config: dict, base_volumes: dict):
        self.catalog = catalog
        self.base_host_config, self.base_volumes = base_host_config, base_volumes

    def groups_of(self, spawner) -> tuple:
        return memberships(spawner.user.name, spawner.user.groups)

    def options_form(self, spawner) -> str:
        return form(self.catalog, self.groups_of(spawner)[0])

    def allowed_images(self, spawner) -> dict:
        """DockerSpawner's own list (its `image` option is refused before it looks)."""
        return {p["name"]: p["image"] for p in allowed(self.catalog, self.groups_of(spawner)[0])}

    async def apply_user_options(self, spawner, user_options) -> None:
        from tornado import web

        # Never remembered: the next start without options gets the default, not a
        # choice made (or refused) before, or a profile since taken away.
        spawner.orm_spawner.user_options = {}
        if getattr(spawner, "db", None) is not None:
            spawner.db.commit()
        member, teaches = self.groups_of(spawner)
        try:
            profile = choose(self.catalog, member, user_options)
        except Refused as refused:
            spawner.log.warning("Refused spawn options of %s: %s", spawner._log_name,
                                refused.message)
            raise web.HTTPError(refused.status, refused.message)
        spawner.profile_name = profile["name"]
        spawner.image = profile["image"]
        spawner.mem_limit = profile["mem_bytes"] or None
        spawner.cpu_limit = profile["cpus"] or None
        spawner.extra_host_config = host_config(self.base_host_config, profile)
        spawner.volumes = {**self.base_volumes, **share_mounts(self.catalog, member, teaches)}
        spawner.log.info("%s starts profile %s (%s)", spawner._log_name, profile["name"],
                         profile["image"])

    def after(self, pre_spawn_hook):
        """The pre-spawn hook, then: each group folder's volume must be the one `inv up`
        made (Docker would make a bare one, owned by root, in its place), and the container
        is labelled with its profile."""
        async def hook(spawner):
            from docker.errors import NotFound
            from tornado import web

            await pre_spawn_hook(spawner)
            for volume in spawner.volumes:
                if volume in {s["volume"] for s in self.catalog["shares"]}:
                    try:
                        await spawner.docker("inspect_volume", volume)
                    except NotFound:
                        raise web.HTTPError(503, f"The shared folder {volume} is missing: an "
                                                 "administrator runs `inv up` to make it.")
            labels = spawner.extra_create_kwargs.setdefault("labels", {})
            labels[f"{LABEL}.profile"] = getattr(spawner, "profile_name", "")
        return hook
