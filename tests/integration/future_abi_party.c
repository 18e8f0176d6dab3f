/* future_abi: a party whose party_abi is one more than this party.h's, as
 * if built against a newer header: partyd must refuse to load it, naming
 * both ABIs. */
#include <party.h>

static const party_def future_def = {
    PARTY_DEF_INIT,
    .name = "future",
};

PARTY_EXTERN const party_def *party_module(void);
PARTY_EXTERN const party_def *party_module(void) {
    return &future_def;
}

PARTY_EXTERN extern const unsigned party_abi;
PARTY_EXTERN const unsigned party_abi = PARTY_ABI_VERSION + 1;
