"""tasks.groups: the hub's groups made equal to userlist's, planned purely, then applied
through a recording stand-in for the hub's REST API (the integration tier uses a real hub)."""
from tasks.access import HubAPI
from tasks.groups import MANAGED_BY, MANAGER, Step, apply_groups, plan_groups
from tasks.userlist import parse_userlist

USERS = parse_userlist("ann admin instructor=physics\nbob group=physics,chem\ncy group=chem\n")
OURS = {MANAGED_BY: MANAGER}


def test_new_groups_are_created_with_their_members_and_instructors():
    assert plan_groups({}, USERS) == [
        Step("create", "physics", ("ann", "bob"), {**OURS, "instructors": ["ann"]}),
        Step("create", "chem", ("bob", "cy"), {**OURS, "instructors": []}),
    ]


def test_equal_groups_need_nothing():
    existing = {"physics": {"users": ["bob", "ann"], "properties": {**OURS, "instructors": ["ann"]}},
                "chem": {"users": ["cy", "bob"], "properties": {**OURS, "instructors": []}},
                "userlist": {"users": ["ann", "bob", "cy"], "properties": {}}}
    assert plan_groups(existing, USERS) == []


def test_members_are_added_and_removed_and_instructors_updated():
    existing = {"physics": {"users": ["ann", "dee"], "properties": {**OURS, "instructors": []}},
                "chem": {"users": ["bob", "cy"], "properties": {**OURS, "instructors": []}}}
    assert plan_groups(existing, USERS) == [
        Step("add", "physics", ("bob",)), Step("remove", "physics", ("dee",)),
        Step("properties", "physics", properties={**OURS, "instructors": ["ann"]}),
    ]


def test_a_group_userlist_dropped_is_deleted_only_if_inv_up_made_it():
    existing = {"old": {"users": ["bob"], "properties": OURS},
                "by-hand": {"users": ["bob"], "properties": {}},
                "physics": {"users": ["ann", "bob"], "properties": {**OURS, "instructors": ["ann"]}},
                "chem": {"users": ["bob", "cy"], "properties": {**OURS, "instructors": []}}}
    assert plan_groups(existing, USERS) == [Step("delete", "old")]


def test_a_group_made_by_hand_that_userlist_names_is_taken_over():
    existing = {"physics": {"users": ["ann", "bob"], "properties": {"x": 1}},
                "chem": {"users": ["bob", "cy"], "properties": {**OURS, "instructors": []}}}
    assert plan_groups(existing, USERS) == [
        Step("properties", "physics", properties={**OURS, "instructors": ["ann"]})]


class Hub:
    """Answers group calls as JupyterHub 6 does, and records them."""

    def __init__(self, groups):
        self.groups, self.calls = groups, []

    def call(self, method, path, body=None):
        self.calls.append((method, path, body))
        if method == "GET" and path.startswith("groups?"):
            offset = int(path.split("offset=")[1].split("&")[0])
            names = sorted(self.groups)[offset:offset + 200]
            return 200, [{"name": n, **self.groups[n]} for n in names]
        name, _, rest = path[len("groups/"):].partition("/")
        if (method, rest) == ("POST", ""):
            self.groups[name] = {"users": list(body["users"]), "properties": {}}
            return 201, {}
        if (method, rest) == ("PUT", "properties"):
            self.groups[name]["properties"] = body
            return 200, {}
        if (method, rest) == ("POST", "users"):
            self.groups[name]["users"] += body["users"]
            return 200, {}
        if (method, rest) == ("DELETE", "users"):
            self.groups[name]["users"] = [u for u in self.groups[name]["users"] if u not in body["users"]]
            return 200, {}
        if (method, rest) == ("DELETE", ""):
            del self.groups[name]
            return 204, None
        return 500, {"message": "unexpected"}

    expect = HubAPI.expect


def test_apply_makes_the_hub_equal_to_userlist_and_says_what_it_changed():
    hub = Hub({"old": {"users": ["bob"], "properties": OURS},
               "physics": {"users": ["dee"], "properties": OURS}})
    line = apply_groups(hub, USERS)
    assert hub.groups == {
        "physics": {"users": ["ann", "bob"], "properties": {**OURS, "instructors": ["ann"]}},
        "chem": {"users": ["bob", "cy"], "properties": {**OURS, "instructors": []}}}
    assert line == ("groups: physics (2), chem (2); add physics: ann, bob; remove physics: dee; "
                    "properties physics; delete old")
    assert apply_groups(hub, USERS) == "groups: physics (2), chem (2)"


def test_a_userlist_without_groups_and_a_hub_without_ours_say_nothing():
    hub = Hub({"by-hand": {"users": [], "properties": {}}})
    assert apply_groups(hub, parse_userlist("ann admin\n")) == ""


def test_many_groups_are_read_page_by_page():
    hub = Hub({f"g{i:03d}": {"users": [], "properties": {}} for i in range(250)})
    apply_groups(hub, USERS)
    pages = [path for method, path, _ in hub.calls if method == "GET"]
    assert pages == ["groups?offset=0&limit=200", "groups?offset=200&limit=200"]
