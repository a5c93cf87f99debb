/* json_fuzz.c: libFuzzer harness for the JSON request decoder (app/protocol.c's
 * proto_decode) and the canonicalisers it feeds, on what the transport lets
 * through: valid UTF-8 of at most PROTO_MAX_FRAME bytes, in a buffer of
 * exactly that size (not NUL-terminated, as ws.c delivers it), so an overread
 * is ASan's to see. Checks, beyond the sanitizers: a failed decode says why;
 * a kept ref is echoed in a reply that is itself a JSON object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "unicode.h"

#include <cJSON.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* proto_canon_* work in place on an owned string: give them a copy. */
static void canon(proto_code (*fn)(proto_str *), const proto_str *s)
{
    if (!s->ptr)
        return;
    proto_str copy = {malloc(s->len + 1), s->len};
    if (!copy.ptr)
        return;
    memcpy(copy.ptr, s->ptr, s->len);
    copy.ptr[s->len] = '\0';
    if (fn(&copy) == PROTO_OK && !utf8_valid(copy.ptr, copy.len))
        abort(); /* a canonical name or content that is not UTF-8 */
    free(copy.ptr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PROTO_MAX_FRAME || !utf8_valid((const char *)data, size))
        return 0;
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    proto_request req;
    proto_code code = proto_decode(in, size, &req);
    if (code != PROTO_OK && req.why[0] == '\0')
        abort(); /* a refusal without a reason */
    canon(proto_canon_name, &req.name);
    canon(proto_canon_content, &req.content);
    proto_str reply = code == PROTO_OK ? proto_enc_pong(req.ref)
                                       : proto_enc_error(req.ref, code, req.why);
    if (reply.ptr) {
        cJSON *j = cJSON_ParseWithLength(reply.ptr, reply.len);
        if (!j || !cJSON_IsObject(j))
            abort(); /* we would send a frame that is not JSON */
        cJSON_Delete(j);
        free(reply.ptr);
    }
    proto_request_free(&req);
    free(in);
    return 0;
}
