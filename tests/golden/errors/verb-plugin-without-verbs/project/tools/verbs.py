VERB = None
