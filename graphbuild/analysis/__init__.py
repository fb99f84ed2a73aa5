"""Analysis: targets -> typed nodes with named inputs, in a networkx graph. No execution, no output."""
