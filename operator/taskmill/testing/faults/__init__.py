"""Proof that no Task is lost and every duplicate execution is explained.

Taskmill delivers at least once: a Task's handler may run more than once, but
only where a lease expired or a process died mid-attempt, and a Task is never
lost. A fault run shows it with three records and one judgement:

- ``recorder``: a handler wrapper that appends one line per execution (Task
  uid, attempt, worker, pid, start, end, outcome) to a log, written before
  the handler returns;
- ``records``: the values a run collects: those executions, the final Task
  objects (``status.history`` holds each attempt's outcome, e.g.
  ``LeaseExpired``), and the lifetimes of the operator, worker and control
  plane processes with the faults done to them;
- ``history``: the checker, a pure function of the records that returns one
  report: Tasks expected, Succeeded, lost, executions, duplicates, and for
  every duplicate the event that explains it. A lost Task, an unexplained
  duplicate, or a broken invariant (two leases of one Task at once, an
  attempt miscounted) fails it.

``python -m taskmill.testing.faults`` runs the checker on files written by a
run (see ``__main__``). Nothing here imports the operator or the worker
runtime, except ``recorder``, which wraps handlers.
"""
