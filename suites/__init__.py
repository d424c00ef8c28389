"""`gearshift bench`'s suites; the whole pipeline reads in one place: `gearshift.suites.run`."""
