"""Faults on purpose (issue #19): kills at random points, a full disk, two writers, corrupt
files. The kill loops are in the slow lane; ``ACN_FAULT_KILLS`` raises the number of kills per
command (default 10) and ``ACN_FAULT_SEED`` changes the seeded kill points."""
