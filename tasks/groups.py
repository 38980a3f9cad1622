"""The hub's groups, kept equal to userlist's `group=` and `instructor=` words by `inv up`,
through the hub's REST API with the tool's token (tasks/access.py).

The hub decides at each start which profiles and folders a user gets from the groups they
are in (hub/hubprofiles.py), so a change in userlist takes effect at their next start. Each
group `inv up` keeps says so in its properties, with its instructors, who may write into
the group's folder; a kept group that userlist no longer names is deleted. Groups made in
the admin panel are left alone, unless userlist names one: then userlist decides it.
"""
from dataclasses import dataclass

from tasks.access import GROUP as USERLIST_GROUP

MANAGED_BY = "managed-by"
MANAGER = "jupyterhub-deploy userlist"
INSTRUCTORS = "instructors"  # hub/hubprofiles.py reads it
PAGE = 200  # JupyterHub's largest page


@dataclass(frozen=True)
class Step:
    action: str  # create, add, remove, properties, delete
    group: str
    users: tuple = ()
    properties: dict = None


def properties_of(users, group: str) -> dict:
    return {MANAGED_BY: MANAGER, INSTRUCTORS: list(users.instructors.get(group, ()))}


def plan_groups(existing: dict, users) -> list:
    """The steps that make the hub's groups (name -> its model: users, properties) equal
    to userlist's; pure."""
    steps = []
    for group, members in users.groups.items():
        wanted = properties_of(users, group)
        model = existing.get(group)
        if model is None:
            steps.append(Step("create", group, tuple(members), wanted))
            continue
        have = model.get("users") or []
        added = tuple(n for n in members if n not in have)
        gone = tuple(n for n in have if n not in members)
        if added:
            steps.append(Step("add", group, added))
        if gone:
            steps.append(Step("remove", group, gone))
        if (model.get("properties") or {}) != wanted:
            steps.append(Step("properties", group, properties=wanted))
    for group, model in existing.items():
        ours = (model.get("properties") or {}).get(MANAGED_BY) == MANAGER
        if ours and group not in users.groups and group != USERLIST_GROUP:
            steps.append(Step("delete", group))
    return steps


def hub_groups(api) -> dict:
    """Every group of the hub, page by page: name -> model."""
    found, offset = {}, 0
    while True:
        _, page = api.expect("GET", f"groups?offset={offset}&limit={PAGE}")
        for model in page or []:
            found[model["name"]] = model
        if len(page or []) < PAGE:
            return found
        offset += PAGE


def apply_groups(api, users) -> str:
    """Make the hub's groups userlist's; returns the line `inv up` prints."""
    from urllib.parse import quote

    steps = plan_groups(hub_groups(api), users)
    for step in steps:
        path = "groups/" + quote(step.group, safe="")
        if step.action == "create":
            api.expect("POST", path, {"users": list(step.users)})
            api.expect("PUT", path + "/properties", step.properties)
        elif step.action == "add":
            api.expect("POST", path + "/users", {"users": list(step.users)})
        elif step.action == "remove":
            api.expect("DELETE", path + "/users", {"users": list(step.users)})
        elif step.action == "properties":
            api.expect("PUT", path + "/properties", step.properties)
        else:
            api.expect("DELETE", path)
    return describe(steps, users)


def describe(steps: list, users) -> str:
    if not users.groups and not steps:
        return ""
    said = [f"{g} ({len(m)})" for g, m in users.groups.items()]
    changes = [f"{s.action} {s.group}" + (f": {', '.join(s.users)}" if s.users else "")
               for s in steps if s.action != "create"]
    line = f"groups: {', '.join(said) or 'none'}"
    return line + (f"; {'; '.join(changes)}" if changes else "")
