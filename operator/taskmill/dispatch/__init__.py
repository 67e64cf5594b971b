"""The pure dispatch core: which Task runs next, and what its status becomes.

No I/O and no global time here: a :class:`~taskmill.dispatch.clock.Clock` is
passed in, so the operator runs this on the wall clock and tests run it on a
virtual one. Imports only ``taskmill.models``.
"""
