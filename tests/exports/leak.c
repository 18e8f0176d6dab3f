/* leak: a shared object that exports what libparty must not — an internal
 * (party__*) — and only one public function, so scripts/check-exports must
 * fail on it, naming both kinds of difference. Built with default
 * visibility, as libparty was before it hid its internals. */
#include <party.h>

void party__exports_leak(void);

void party__exports_leak(void) {}

const char *party_strerror(int err) {
    return err == 0 ? "success" : "error";
}
