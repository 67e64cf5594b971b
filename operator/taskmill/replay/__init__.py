"""What would have happened under another order or policy: ``taskmill replay``.

Pure, like the dispatch core it runs: :mod:`.history` turns Task objects into
a history, :mod:`.simulator` replays it on a virtual clock through the
operator's own decisions and dispatcher, :mod:`.report` sets real beside
simulated figures, and :mod:`.chart` draws them. Reading Tasks from the API
or a file, and the command, are in :mod:`taskmill.cli.replay`.
"""
