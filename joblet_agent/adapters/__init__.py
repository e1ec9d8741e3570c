"""The only modules with side effects on the outside world: PID 1, the journal, the database."""
