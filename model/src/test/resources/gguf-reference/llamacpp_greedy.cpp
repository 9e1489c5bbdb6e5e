// Greedy decoding with llama.cpp's own engine, for the fixtures in llamacpp.txt (see make_llamacpp_fixtures.sh).
// usage: llamacpp_greedy MODEL.gguf N_PREDICT IDS [IDS ...]   (each IDS a comma-separated prompt of token ids)
// Prints one line per prompt: the generated ids, each as id/gap, gap being the distance from the top logit to
// the runner-up at that step (a small gap is where float rounding may pick the other token).
#include "llama.h"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

static std::vector<llama_token> parse(const char * s) {
    std::vector<llama_token> ids;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) ids.push_back(std::stoi(item));
    return ids;
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT IDS [IDS ...]\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (model == nullptr) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const int n_predict = atoi(argv[2]);
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int a = 3; a < argc; a++) {
        std::vector<llama_token> prompt = parse(argv[a]);
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = prompt.size() + n_predict;
        cp.n_batch = cp.n_ctx;
        cp.n_threads = 1;
        cp.n_threads_batch = 1;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (ctx == nullptr) {
            fprintf(stderr, "cannot create a context\n");
            return 1;
        }
        llama_batch batch = llama_batch_get_one(prompt.data(), (int32_t) prompt.size());
        llama_token next = 0;
        for (int i = 0; i < n_predict; i++) {
            if (llama_decode(ctx, batch) != 0) {
                fprintf(stderr, "llama_decode failed\n");
                return 1;
            }
            const float * z = llama_get_logits_ith(ctx, -1);
            int best = 0;
            for (int v = 1; v < n_vocab; v++) if (z[v] > z[best]) best = v;
            float second = -1e30f;
            for (int v = 0; v < n_vocab; v++) if (v != best) second = std::max(second, z[v]);
            printf("%s%d/%.5f", i ? " " : "", best, z[best] - second);
            next = best;
            batch = llama_batch_get_one(&next, 1);
        }
        printf("\n");
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
