"""Test support shared by the unit and end-to-end suites: the scripted backend and its fixtures."""
