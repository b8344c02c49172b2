print("flatpkg main ran")
