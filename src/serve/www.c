/* www.c -- embeds src/serve/www/index.html (the web page of `duet serve`)
 * into the binary as duet_www_index_html, NUL-terminated, with the
 * assembler's .incbin (paths are relative to the repository root, where make
 * runs; the Makefile makes this object depend on the page). */
#if defined(__ELF__)
__asm__(".section .rodata\n"
        ".global duet_www_index_html\n"
        ".type duet_www_index_html, @object\n"
        "duet_www_index_html:\n"
        ".incbin \"src/serve/www/index.html\"\n"
        ".byte 0\n"
        ".size duet_www_index_html, . - duet_www_index_html\n"
        ".previous\n");
#else
#error "www.c embeds the page with .incbin on ELF targets"
#endif
