from speechs2s.cli import main

main()
