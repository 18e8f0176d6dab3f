/* cmocka as the static analyzer should see it: fail() and fail_msg() end
 * the test (cmocka's _fail longjmps out of it) but _fail is not declared
 * noreturn, so the analyzer follows paths past them and reports the frees
 * done just before a failure as uses after free. Every cmocka test gets
 * this declaration first (-include, see tests/CMakeLists.txt), before any
 * system header, so it includes none; cmocka.h declares the same function
 * again. analyzer_noreturn tells only the analyzer: the compiled code is
 * the same. */
#ifndef PARTY_TESTS_CMOCKA_ANALYZER_H
#define PARTY_TESTS_CMOCKA_ANALYZER_H

#if defined(__has_attribute)
#if __has_attribute(analyzer_noreturn)
void _fail(const char *const file, const int line) __attribute__((analyzer_noreturn));
#endif
#endif

#endif
