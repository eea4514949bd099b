// Empty: this package only names the crates whose sources the harness reads.
