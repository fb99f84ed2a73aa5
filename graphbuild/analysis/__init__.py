"""Analysis: targets -> typed nodes with named inputs, in a directed graph. No execution, no output."""
