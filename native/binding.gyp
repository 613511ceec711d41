{
  "targets": [
    {
      "target_name": "confab_fanout",
      "sources": ["fanout.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
