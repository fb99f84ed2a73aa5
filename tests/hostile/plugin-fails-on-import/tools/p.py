x = 1
y = {}["missing"]
