"""tasks.userlist: who may log in, every problem reported at once with its line."""
import pytest
from invoke.exceptions import Exit

from tasks.userlist import Users, check_name, load_userlist, parse_userlist


def problems_of(text):
    """The message parse_userlist refuses `text` with."""
    with pytest.raises(Exit) as caught:
        parse_userlist(text)
    return caught.value.message


def test_valid_file_with_comments_blank_lines_and_inline_comments():
    text = (
        "# who may use the hub\n"
        "\n"
        "ann admin\n"
        "   \n"
        "bob            # the new one\n"
        "cy.d admin  # second admin\n"
        "e_f-9\n"
        "\t# indented comment\n"
    )
    users = parse_userlist(text)
    assert users == Users(admins=("ann", "cy.d"), users=("bob", "e_f-9"))
    assert users.everyone == ("ann", "cy.d", "bob", "e_f-9")


def test_a_lone_admin_is_enough_and_a_64_character_name_is_allowed():
    longest = "a" * 64
    assert parse_userlist(f"{longest} admin").admins == (longest,)


@pytest.mark.parametrize("name, hint", [
    ("Alice", True),
    ("a/b", False),
    ("-x", False),
    (".x", False),
    ("a" * 65, False),
    ("bob,cy", False),
    ("ümit", False),
])
def test_bad_name_names_its_line_and_the_rule(name, hint):
    message = problems_of(f"ann admin\n# comment\n{name}\n")
    assert f"userlist:3: {name!r} is not a valid user name" in message
    assert "at most 64 characters" in message
    assert ("write it in lowercase" in message) == hint


def test_unknown_role_word():
    message = problems_of("ann admin\nbob superuser\n")
    assert "userlist:2: unknown role 'superuser' for bob" in message


def test_two_role_words_are_refused_with_their_line():
    message = problems_of("ann admin\nbob admin user\n")
    assert "userlist:2:" in message
    assert "'user'" in message and "bob" in message


def test_a_repeated_admin_is_not_called_an_unknown_role():
    message = problems_of("ann admin admin\n")
    assert "userlist:1:" in message
    assert "unknown role 'admin'" not in message


def test_duplicate_name_names_both_lines():
    message = problems_of("ann admin\nbob\n\ncy\nbob admin\n")
    assert "userlist:5: bob is listed twice (first on line 2)" in message


def test_no_admin():
    with pytest.raises(Exit, match="names no administrator"):
        parse_userlist("# nobody in charge\nbob\ncy\n")


def test_empty_file_has_no_admin():
    with pytest.raises(Exit, match="names no administrator"):
        parse_userlist("")


def test_every_problem_is_reported_in_one_message_in_file_order():
    text = "Ann admin\nbob\nbob\ncy root\nd/e\n"
    message = problems_of(text)
    lines = message.splitlines()
    assert lines[0] == "userlist has problems:"
    assert [line.split(":", 2)[1] for line in lines[1:]] == ["1", "3", "4", "5"]
    assert "'Ann'" in lines[1] and "bob is listed twice" in lines[2]
    assert "'root'" in lines[3] and "'d/e'" in lines[4]


def test_source_names_the_file_in_messages():
    with pytest.raises(Exit, match=r"other-list:1: 'X'"):
        parse_userlist("X admin", source="other-list")


@pytest.mark.parametrize("name", ["alice", "a.b", "a-b", "a_b", "0", "a" * 64])
def test_check_name_returns_a_valid_name(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [
    "", "Alice", "a;rm -rf /", "$(id)", "../etc", "a b", "-rf", "a" * 65, "a/b", "ann\x00",
])
def test_check_name_refuses_what_userlist_could_not_hold(name):
    with pytest.raises(Exit) as caught:
        check_name(name)
    assert caught.value.message.startswith(f"{name!r} is not a valid user name")


def test_check_name_refuses_a_trailing_newline():
    with pytest.raises(Exit):
        check_name("alice\n")


def test_load_userlist_reads_the_file(tmp_path):
    (tmp_path / "userlist").write_text("ann admin\nbob\n", encoding="utf-8")
    assert load_userlist(tmp_path) == Users(admins=("ann",), users=("bob",))


def test_load_userlist_reports_problems_of_the_file(tmp_path):
    (tmp_path / "userlist").write_text("ann admin\nBob\n", encoding="utf-8")
    with pytest.raises(Exit, match=r"userlist:2: 'Bob'"):
        load_userlist(tmp_path)


def test_load_userlist_without_a_file(tmp_path):
    with pytest.raises(Exit) as caught:
        load_userlist(tmp_path)
    assert caught.value.message == (
        f"No userlist in {tmp_path}: create it with one line 'YOURNAME admin'."
    )


# --- groups ---------------------------------------------------------------------------------

def test_group_and_instructor_words_make_groups_in_file_order():
    users = parse_userlist("ann admin instructor=physics\n"
                           "bob group=physics,chem\n"
                           "cy group=chem instructor=bio\n"
                           "dee\n")
    assert users.groups == {"physics": ("ann", "bob"), "chem": ("bob", "cy"), "bio": ("cy",)}
    assert users.instructors == {"physics": ("ann",), "bio": ("cy",)}
    assert users.group_lines == {"physics": 1, "chem": 2, "bio": 3}
    assert users.admins == ("ann",) and users.users == ("bob", "cy", "dee")


def test_without_group_words_there_are_no_groups():
    assert parse_userlist("ann admin\nbob\n").groups == {}


@pytest.mark.parametrize("line, says", [
    ("bob group=Physics", "userlist:2: group='Physics' for bob is not a valid group name"),
    ("bob group=", "userlist:2: group='' for bob is not a valid group name"),
    ("bob group=a/b", "userlist:2: group='a/b' for bob is not a valid group name"),
    ("bob team=physics", "userlist:2: unknown word 'team=physics' for bob"),
    ("bob group=userlist", "userlist:2: the group name 'userlist' is the one `inv up` keeps"),
    ("bob group=physics instructor=physics", "userlist:2: bob is put in group physics twice"),
    ("bob group=physics,physics", "userlist:2: bob is put in group physics twice"),
])
def test_a_bad_group_word_names_its_line(line, says):
    assert says in problems_of(f"ann admin\n{line}\n")


def test_a_group_problem_does_not_hide_the_next_lines_problems():
    message = problems_of("ann admin\nbob group=X\nBob\n")
    assert "userlist:2:" in message and "userlist:3: 'Bob'" in message
