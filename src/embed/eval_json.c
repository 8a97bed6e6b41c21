/* eval_json.c -- Recall@K results <-> JSON, the form run.json, the stage
 * manifests and the ablation table keep them in. */
#include "embed/embed.h"
#include <string.h>

json_t *duet_eval_to_json(const duet_eval_result *r) {
    const duet_recall *q[2] = {&r->i2t, &r->t2i};
    json_t *o = json_object();
    for (int s = 0; s < 2; s++)
        json_object_set_new(o, s ? "t2i" : "i2t",
                            json_pack("{s:f, s:f, s:f, s:f, s:f}", "r1", q[s]->r1, "r5", q[s]->r5,
                                      "r10", q[s]->r10, "medr", q[s]->medr, "meanr", q[s]->meanr));
    json_object_set_new(o, "rsum", json_real(r->rsum));
    json_object_set_new(o, "n_images", json_integer((json_int_t)r->n_images));
    json_object_set_new(o, "n_captions", json_integer((json_int_t)r->n_captions));
    json_object_set_new(o, "n_folds", json_integer((json_int_t)r->n_folds));
    return o;
}

void duet_eval_from_json(const json_t *o, duet_eval_result *r) {
    memset(r, 0, sizeof *r);
    duet_recall *q[2] = {&r->i2t, &r->t2i};
    for (int s = 0; s < 2; s++) {
        json_t *x = json_object_get(o, s ? "t2i" : "i2t");
        q[s]->r1 = json_number_value(json_object_get(x, "r1"));
        q[s]->r5 = json_number_value(json_object_get(x, "r5"));
        q[s]->r10 = json_number_value(json_object_get(x, "r10"));
        q[s]->medr = json_number_value(json_object_get(x, "medr"));
        q[s]->meanr = json_number_value(json_object_get(x, "meanr"));
    }
    r->rsum = json_number_value(json_object_get(o, "rsum"));
    r->n_images = (size_t)json_integer_value(json_object_get(o, "n_images"));
    r->n_captions = (size_t)json_integer_value(json_object_get(o, "n_captions"));
    r->n_folds = (size_t)json_integer_value(json_object_get(o, "n_folds"));
}
