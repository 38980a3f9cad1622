"""tasks.oauth: the GitHub OAuth app's settings, each fail-fast case, and secrets/oauth.env."""
import stat

import pytest
from invoke.exceptions import Exit

from tasks.oauth import (
    KEYS, OAUTH_FILE, OAuthApp, OAuthFile, callback_problem, check_login, ensure_oauth_file,
    plan_oauth, read_oauth_file, render_oauth_file,
)
from tasks.settings import parse_settings

NAMES = ["hub.example.org", "localhost", "127.0.0.1"]
GOOD = {"GITHUB_CLIENT_ID": "Iv1.abc123", "GITHUB_CLIENT_SECRET": "0123456789abcdef" * 2 + "01234567",
        "OAUTH_CALLBACK_URL": "https://hub.example.org/hub/oauth_callback"}


def refusal(oauth_file=OAuthFile({}, None), environ=None, port=443):
    with pytest.raises(Exit) as caught:
        plan_oauth(oauth_file, environ or {}, NAMES, port)
    return caught.value.message


def test_from_the_environment():
    app = plan_oauth(OAuthFile({}, None), GOOD, NAMES, 443)
    assert app == OAuthApp(GOOD["GITHUB_CLIENT_ID"], GOOD["GITHUB_CLIENT_SECRET"],
                           GOOD["OAUTH_CALLBACK_URL"])


def test_from_the_file():
    assert plan_oauth(OAuthFile(GOOD, 0o600), {}, NAMES, 443).client_id == "Iv1.abc123"


def test_the_environment_wins_over_the_file_and_values_are_stripped():
    app = plan_oauth(OAuthFile(GOOD, 0o600), {"GITHUB_CLIENT_ID": " Iv1.other "}, NAMES, 443)
    assert (app.client_id, app.client_secret) == ("Iv1.other", GOOD["GITHUB_CLIENT_SECRET"])


def test_the_secret_is_never_in_the_repr():
    assert GOOD["GITHUB_CLIENT_SECRET"] not in repr(plan_oauth(OAuthFile(GOOD, 0o600), {}, NAMES, 443))
    assert GOOD["GITHUB_CLIENT_SECRET"] not in repr(OAuthFile(GOOD, 0o600))


@pytest.mark.parametrize("missing", KEYS)
def test_each_missing_item_is_named(missing):
    values = {k: v for k, v in GOOD.items() if k != missing}
    message = refusal(environ=values)
    assert message.startswith(f"HUB_AUTHENTICATOR=github needs {missing}: ")
    assert f"secrets/{OAUTH_FILE}" in message and "inv up" in message


def test_an_empty_value_counts_as_missing_even_over_a_good_file():
    message = refusal(OAuthFile(GOOD, 0o600), {"GITHUB_CLIENT_SECRET": "  "})
    assert message.startswith("HUB_AUTHENTICATOR=github needs GITHUB_CLIENT_SECRET: ")


def test_nothing_at_all_names_all_three():
    assert "needs GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, OAUTH_CALLBACK_URL: give them" in refusal()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_a_file_others_can_read_is_refused_with_the_fix(mode):
    message = refusal(OAuthFile(GOOD, mode), GOOD)  # even when the shell gives everything
    assert f"secrets/{OAUTH_FILE} can be read by other users (mode {mode:04o})" in message
    assert f"chmod 600 secrets/{OAUTH_FILE}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_modes_are_fine(mode):
    assert plan_oauth(OAuthFile(GOOD, mode), {}, NAMES, 443)


@pytest.mark.parametrize("url,port", [
    ("https://hub.example.org/hub/oauth_callback", 443),
    ("https://hub.example.org:443/hub/oauth_callback", 443),
    ("https://HUB.example.org/hub/oauth_callback", 443),
    ("https://127.0.0.1:8443/hub/oauth_callback", 8443),
    ("https://localhost:8443/hub/oauth_callback", 8443),
])
def test_callbacks_that_match(url, port):
    assert callback_problem(url, NAMES, port) == ""


@pytest.mark.parametrize("url,port", [
    ("http://hub.example.org/hub/oauth_callback", 443),          # not HTTPS
    ("https://other.example.org/hub/oauth_callback", 443),       # not one of our names
    ("https://hub.example.org:8443/hub/oauth_callback", 443),    # another port
    ("https://hub.example.org/hub/oauth_callback", 8443),        # port missing
    ("https://hub.example.org/oauth_callback", 443),             # wrong path
    ("https://hub.example.org/hub/oauth_callback/", 443),
    ("https://hub.example.org/hub/oauth_callback?x=1", 443),
    ("https://user@hub.example.org/hub/oauth_callback", 443),
    ("https://hub.example.org:99999/hub/oauth_callback", 443),   # not a port
    ("hub.example.org/hub/oauth_callback", 443),
])
def test_callbacks_that_do_not_match_say_what_is_expected(url, port):
    message = callback_problem(url, NAMES, port)
    expected = "https://hub.example.org" + ("" if port == 443 else f":{port}") + "/hub/oauth_callback"
    assert message.startswith(f"OAUTH_CALLBACK_URL={url!r} does not match this hub: expected {expected}")
    assert "localhost, 127.0.0.1" in message


def test_an_ipv6_name_is_written_in_brackets():
    assert callback_problem("https://[::1]:8443/hub/oauth_callback", ["::1"], 8443) == ""
    assert "expected https://[::1]:8443/hub/oauth_callback" in callback_problem("x", ["::1"], 8443)


def test_a_bad_callback_is_refused():
    message = refusal(environ={**GOOD, "OAUTH_CALLBACK_URL": "https://hub.example.org:444/hub/oauth_callback"})
    assert message.startswith("GitHub login settings:\n  OAUTH_CALLBACK_URL=")


@pytest.mark.parametrize("value", ["two words", "a'b", 'a"b', "a#b", "$(id)", "a\\b"])
def test_values_a_dotenv_line_cannot_hold_unquoted_are_refused(value):
    message = refusal(environ={**GOOD, "GITHUB_CLIENT_SECRET": value})
    assert "GITHUB_CLIENT_SECRET holds characters that do not fit" in message
    assert value not in message  # a secret is not echoed back


def settings(**changes):
    values = {"COMPOSE_PROJECT_NAME": "p", "HUB_PORT": "443", "DOCKER_NOTEBOOK_IMAGE": "nb",
              "BASE_IMAGE": "debian", "BUILD_CA_BUNDLE": "none", "HUB_AUTHENTICATOR": "github"}
    return parse_settings({**values, **changes}, {})


def test_check_login_is_a_no_op_for_the_native_login(tmp_path):
    assert check_login(tmp_path, settings(HUB_AUTHENTICATOR="native"), NAMES, environ={}) is None


def test_check_login_reads_the_file_and_the_environment(tmp_path):
    (tmp_path / "secrets").mkdir()
    path = tmp_path / "secrets" / OAUTH_FILE
    path.write_text("# mine\nGITHUB_CLIENT_ID=Iv1.abc123\nexport GITHUB_CLIENT_SECRET='s3cret'\n")
    path.chmod(0o600)
    app = check_login(tmp_path, settings(), NAMES, environ={"OAUTH_CALLBACK_URL": GOOD["OAUTH_CALLBACK_URL"]})
    assert (app.client_id, app.client_secret) == ("Iv1.abc123", "s3cret")
    path.chmod(0o644)
    with pytest.raises(Exit, match="chmod 600"):
        check_login(tmp_path, settings(), NAMES, environ=GOOD)


def test_a_folder_in_place_of_the_file_is_refused(tmp_path):
    (tmp_path / OAUTH_FILE).mkdir()
    with pytest.raises(Exit, match=f"secrets/{OAUTH_FILE} is not a file"):
        read_oauth_file(tmp_path)


def test_no_file_reads_as_empty(tmp_path):
    assert read_oauth_file(tmp_path) == OAuthFile({}, None)


def test_ensure_writes_a_private_file_that_reads_back_the_same(tmp_path):
    app = OAuthApp(GOOD["GITHUB_CLIENT_ID"], GOOD["GITHUB_CLIENT_SECRET"], GOOD["OAUTH_CALLBACK_URL"])
    assert ensure_oauth_file(tmp_path, app) == f"secrets/{OAUTH_FILE}: written from the environment (mode 0600)"
    path = tmp_path / OAUTH_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == render_oauth_file(app)
    assert read_oauth_file(tmp_path).values == GOOD
    before = path.stat().st_mtime_ns
    assert ensure_oauth_file(tmp_path, app) == f"secrets/{OAUTH_FILE}: kept"
    assert path.stat().st_mtime_ns == before


def test_ensure_rewrites_when_the_operator_gives_a_new_secret(tmp_path):
    ensure_oauth_file(tmp_path, OAuthApp("id", "old", GOOD["OAUTH_CALLBACK_URL"]))
    ensure_oauth_file(tmp_path, OAuthApp("id", "new", GOOD["OAUTH_CALLBACK_URL"]))
    assert read_oauth_file(tmp_path).values["GITHUB_CLIENT_SECRET"] == "new"


# --- the .env settings for GitHub -----------------------------------------------------------

def test_github_is_an_authenticator_and_github_com_the_default():
    s = settings()
    assert (s.authenticator, s.github_url, s.github_allowed_orgs) == ("github", "https://github.com", ())


@pytest.mark.parametrize("url,expected", [
    ("https://ghe.example.org/", "https://ghe.example.org"),
    ("http://github.test:8080", "http://github.test:8080"),
    ("https://ghe.example.org/github", "https://ghe.example.org/github"),
    ("", "https://github.com"),
])
def test_github_url(url, expected):
    assert settings(GITHUB_URL=url).github_url == expected


@pytest.mark.parametrize("url", ["ghe.example.org", "ftp://ghe.example.org", "https://",
                                 "https://u:p@ghe.example.org", "https://ghe.example.org?x=1",
                                 "https://ghe.example.org:99999", "https://ghe example.org"])
def test_bad_github_url(url):
    with pytest.raises(Exit, match="GITHUB_URL=.* must be the address of GitHub"):
        settings(GITHUB_URL=url)


def test_allowed_orgs_and_teams():
    assert settings(GITHUB_ALLOWED_ORGS="lab, lab:staff  other-org").github_allowed_orgs == (
        "lab", "lab:staff", "other-org")


@pytest.mark.parametrize("orgs", ["-lab", "lab:", "lab:staff:x", "lab:staff!", "lab/staff"])
def test_bad_allowed_orgs(orgs):
    with pytest.raises(Exit, match="GITHUB_ALLOWED_ORGS: .* is not an organization"):
        settings(GITHUB_ALLOWED_ORGS=orgs)
