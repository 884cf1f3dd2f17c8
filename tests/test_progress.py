from tempflex.progress import tracked


def test_tracked_yields_every_item_and_keeps_stdout_clean(capsys):
    items = list(range(5))
    assert tracked(items, "nothing to show", show=False) is items
    assert list(tracked(items, "counting")) == items
    assert list(tracked(iter(items), "counting", transient=False)) == items
    assert capsys.readouterr().out == ""  # the bar goes to stderr: stdout may carry JSON
