/* unicode.h: the little Unicode the protocol needs, without a Unicode library.
 *
 * The transport checks every text frame with utf8_valid() (RFC 6455 requires
 * closing with 1007 on invalid UTF-8); protocol.c then walks already-valid text
 * with utf8_next() and classifies code points with the uni_is_* predicates,
 * whose tables app/gen_unicode.py generates into unicode_tables.h.
 */
#ifndef CHATTER_UNICODE_H
#define CHATTER_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 (RFC 3629): rejects overlong forms, surrogates (U+D800..DFFF),
 * code points above U+10FFFF, stray continuation bytes and truncated sequences,
 * so that everything downstream may assume well-formed text. */
bool utf8_valid(const char *s, size_t len);

/* Length in bytes (1..4) of the well-formed sequence starting at s[0], or 0 if
 * none does; lets an encoder repair text it did not validate itself. */
size_t utf8_seq_len(const char *s, size_t len);

/* Decodes the code point at s[*i] and advances *i past it. Only for text that
 * utf8_valid() accepted: it does not re-check, which keeps loops cheap. */
uint32_t utf8_next(const char *s, size_t *i);

/* Decodes the code point that ends just before s[*end] and moves *end back to
 * its first byte; lets trimming work from the right in valid text. */
uint32_t utf8_prev(const char *s, size_t *end);

/* Unicode general category L* (Lu, Ll, Lt, Lm, Lo). */
bool uni_is_letter(uint32_t cp);

/* Unicode general category Nd (decimal digits of every script). */
bool uni_is_digit(uint32_t cp);

/* Unicode property White_Space (what the protocol trims). */
bool uni_is_space(uint32_t cp);

/* Renders as nothing: Default_Ignorable_Code_Point (U+200B, bidi controls,
 * variation selectors, U+115F/U+1160/U+3164/U+FFA0 Hangul fillers, tags ...)
 * plus U+2800 BRAILLE PATTERN BLANK.  A name made only of these (and inner
 * spaces) would show blank, so it is refused (issue 7 item 11). */
bool uni_is_invisible(uint32_t cp);

#endif
