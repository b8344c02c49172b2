from srcpkg.cli import main

main()
