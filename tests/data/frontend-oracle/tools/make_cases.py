#!/usr/bin/env python3
"""Write the hand-made subgraph / bypass / virtual-node UI workflows (cases 01-12) next to this folder.

usage: python3 make_cases.py [OUT_DIR]   (default: the parent folder, tests/data/frontend-oracle/)
Only core node types (+ KJNodes SetNode/GetNode). Distinct widget values make the source of every value visible:
  848 = EmptyHunyuanLatentVideo default width      832 = value stored on the inner node
  640 = value stored on the subgraph instance      704 = inner value in the "promoted inner widget" cases
  512 = root PrimitiveInt                          608 = nested inner instance's own stored value
  720 = legacy PrimitiveNode value
"""
import json
import os
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

S_LATENT = '11111111-1111-4111-8111-111111111111'   # width -> EmptyHunyuanLatentVideo -> LATENT
S_NESTED = '22222222-2222-4222-8222-222222222222'   # width -> [instance of S_LATENT] -> LATENT
S_MODEL = '33333333-3333-4333-8333-333333333333'    # MODEL -> ModelSamplingSD3 -> MODEL
S_MODEL2 = '44444444-4444-4444-8444-444444444444'   # MODEL -> LoraLoaderModelOnly(bypassed) -> ModelSamplingSD3 -> MODEL
S_PROMO = '55555555-5555-4555-8555-555555555555'    # no inputs; inner widget promoted via proxyWidgets only

_pos = [0]


def node(nid, typ, inputs=(), outputs=(), wv=None, mode=0, props=None, title=None):
    _pos[0] += 1
    n = {'id': nid, 'type': typ, 'pos': [100 + 300 * _pos[0], 100], 'size': [270, 130], 'flags': {},
         'order': _pos[0], 'mode': mode, 'inputs': list(inputs), 'outputs': list(outputs),
         'properties': props if props is not None else {'Node name for S&R': typ}}
    if title:
        n['title'] = title
    if wv is not None:
        n['widgets_values'] = wv
    return n


def inp(name, typ, link=None, widget=False, label=None):
    d = {'name': name, 'type': typ, 'link': link}
    if widget:
        d['widget'] = {'name': name}
    if label:
        d['label'] = label
    return d


def out(name, typ, links=None, widget=None):
    d = {'name': name, 'type': typ, 'links': links}
    if widget:
        d['widget'] = {'name': widget}
    return d


def lnk(i, o, os_, t, ts, typ):
    return {'id': i, 'origin_id': o, 'origin_slot': os_, 'target_id': t, 'target_slot': ts, 'type': typ}


def io(uid, name, typ, link_ids, y):
    return {'id': uid, 'name': name, 'type': typ, 'linkIds': link_ids, 'pos': [0, y]}


def subgraph(sid, name, inputs, outputs, nodes, links, last_node, last_link):
    return {'id': sid, 'version': 1,
            'state': {'lastGroupId': 0, 'lastNodeId': last_node, 'lastLinkId': last_link, 'lastRerouteId': 0},
            'revision': 0, 'config': {}, 'name': name,
            'inputNode': {'id': -10, 'bounding': [-400, 100, 120, 80]},
            'outputNode': {'id': -20, 'bounding': [900, 100, 120, 60]},
            'inputs': inputs, 'outputs': outputs, 'widgets': [], 'nodes': nodes, 'groups': [], 'links': links,
            'extra': {}}


def workflow(nodes, links, subgraphs=(), last_node=20, last_link=20, extra=None):
    wf = {'id': '00000000-0000-4000-8000-000000000000', 'revision': 0, 'last_node_id': last_node,
          'last_link_id': last_link, 'nodes': nodes, 'links': links, 'groups': [], 'config': {},
          'extra': extra or {'ds': {'scale': 1, 'offset': [0, 0]}}, 'version': 0.4}
    if subgraphs:
        wf['definitions'] = {'subgraphs': list(subgraphs)}
    return wf


def s_latent(inner_width=832, with_input=True):
    """Subgraph: input 'width' (link 1) -> node 10 EmptyHunyuanLatentVideo -> output 'LATENT' (link 2)."""
    ins = [inp('width', 'INT', 1, widget=True)] if with_input else []
    n10 = node(10, 'EmptyHunyuanLatentVideo', ins, [out('LATENT', 'LATENT', [2])], [inner_width, 480, 81, 1])
    links = ([lnk(1, -10, 0, 10, 0, 'INT')] if with_input else []) + [lnk(2, 10, 0, -20, 0, 'LATENT')]
    inputs = [io('aaaaaaaa-0000-4000-8000-000000000001', 'width', 'INT', [1], 120)] if with_input else []
    return subgraph(S_LATENT if with_input else S_PROMO, 'Latent' if with_input else 'LatentPromoted', inputs,
                    [io('aaaaaaaa-0000-4000-8000-000000000002', 'LATENT', 'LATENT', [2], 120)], [n10], links, 10, 2)


def save_latent(nid, link, prefix):
    return node(nid, 'SaveLatent', [inp('samples', 'LATENT', link)], [], [prefix])


def instance(nid, sid, width_link=None, wv=None, proxy=None, mode=0, title=None, has_width=True,
             out_name='LATENT', out_type='LATENT', out_links=None):
    props = {}
    if proxy is not None:
        props['proxyWidgets'] = proxy
    ins = [inp('width', 'INT', width_link, widget=True)] if has_width else []
    return node(nid, sid, ins, [out(out_name, out_type, out_links)], wv, mode, props, title)


def latent_case(inst_kwargs, prefix, extra_nodes=(), extra_links=(), inner_width=832, with_input=True):
    inst = instance(5, S_LATENT if with_input else S_PROMO, out_links=[11], **inst_kwargs)
    nodes = list(extra_nodes) + [inst, save_latent(6, 11, prefix)]
    links = [[11, 5, 0, 6, 0, 'LATENT']] + list(extra_links)
    return workflow(nodes, links, [s_latent(inner_width, with_input)])


def model_chain(mode, prefix_title):
    """Root UNETLoader 1 -> subgraph instance 5 (MODEL->ModelSamplingSD3->MODEL) -> root ModelSamplingSD3 2."""
    n10 = node(10, 'ModelSamplingSD3', [inp('model', 'MODEL', 1)], [out('MODEL', 'MODEL', [2])], [5.0])
    sg = subgraph(S_MODEL, 'ModelChain', [io('bbbbbbbb-0000-4000-8000-000000000001', 'model', 'MODEL', [1], 120)],
                  [io('bbbbbbbb-0000-4000-8000-000000000002', 'MODEL', 'MODEL', [2], 120)], [n10],
                  [lnk(1, -10, 0, 10, 0, 'MODEL'), lnk(2, 10, 0, -20, 0, 'MODEL')], 10, 2)
    unet = node(1, 'UNETLoader', [], [out('MODEL', 'MODEL', [11])], ['wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors', 'default'])
    inst = node(5, S_MODEL, [inp('model', 'MODEL', 11)], [out('MODEL', 'MODEL', [12])], [], mode, {'proxyWidgets': []},
                prefix_title)
    msd = node(2, 'ModelSamplingSD3', [inp('model', 'MODEL', 12)], [out('MODEL', 'MODEL', None)], [8.0])
    return workflow([unet, inst, msd], [[11, 1, 0, 5, 0, 'MODEL'], [12, 5, 0, 2, 0, 'MODEL']], [sg])


def cases():
    c = {}
    # (1) instance value via proxyWidgets ["-1","width"]
    c['01_subgraph_input_proxy_minus1'] = latent_case(dict(wv=[640], proxy=[['-1', 'width']]), 'latents/case01')
    # (2) same, no proxyWidgets property at all
    c['02_subgraph_input_no_proxy'] = latent_case(dict(wv=[640]), 'latents/case02')
    # (3) official-template style: subgraph input linked inside, proxyWidgets point at the INNER node, instance wv []
    c['03_promoted_inner_widget_linked'] = latent_case(dict(wv=[], proxy=[['10', 'width']]), 'latents/case03',
                                                       inner_width=704)
    # (3b) pure promotion: no subgraph input, inner widget shown on the instance, value only inside
    c['03b_promoted_inner_widget_unlinked'] = latent_case(dict(wv=[], proxy=[['10', 'width']], has_width=False),
                                                          'latents/case03b', inner_width=704, with_input=False)
    # (4) subgraph input linked from a root PrimitiveInt
    prim = node(7, 'PrimitiveInt', [], [out('INT', 'INT', [12])], [512, 'fixed'])
    c['04_subgraph_input_from_primitiveint'] = latent_case(dict(wv=[640], proxy=[['-1', 'width']], width_link=12),
                                                           'latents/case04', extra_nodes=[prim],
                                                           extra_links=[[12, 7, 0, 5, 0, 'INT']])
    # (5) nested: root instance 5 of S_NESTED, which holds instance 20 of S_LATENT
    inner_inst = instance(20, S_LATENT, width_link=1, wv=[608], proxy=[['-1', 'width']], out_links=[2])
    nested = subgraph(S_NESTED, 'Nested', [io('cccccccc-0000-4000-8000-000000000001', 'width', 'INT', [1], 120)],
                      [io('cccccccc-0000-4000-8000-000000000002', 'LATENT', 'LATENT', [2], 120)], [inner_inst],
                      [lnk(1, -10, 0, 20, 0, 'INT'), lnk(2, 20, 0, -20, 0, 'LATENT')], 20, 2)
    root_inst = instance(5, S_NESTED, wv=[640], proxy=[['-1', 'width']], out_links=[11])
    c['05_nested_subgraph'] = workflow([root_inst, save_latent(6, 11, 'latents/case05')], [[11, 5, 0, 6, 0, 'LATENT']],
                                       [nested, s_latent()])
    # (6) bypassed / (7) muted subgraph instance between UNETLoader and ModelSamplingSD3
    c['06_subgraph_instance_bypassed'] = model_chain(4, 'bypassed chain')
    c['07_subgraph_instance_muted'] = model_chain(2, 'muted chain')
    # (6b) bypassed node INSIDE a subgraph
    lora = node(10, 'LoraLoaderModelOnly', [inp('model', 'MODEL', 1)], [out('MODEL', 'MODEL', [2])],
                ['lightx2v.safetensors', 1.0], mode=4)
    msd_in = node(11, 'ModelSamplingSD3', [inp('model', 'MODEL', 2)], [out('MODEL', 'MODEL', [3])], [5.0])
    sg2 = subgraph(S_MODEL2, 'ModelChainInnerBypass',
                   [io('dddddddd-0000-4000-8000-000000000001', 'model', 'MODEL', [1], 120)],
                   [io('dddddddd-0000-4000-8000-000000000002', 'MODEL', 'MODEL', [3], 120)], [lora, msd_in],
                   [lnk(1, -10, 0, 10, 0, 'MODEL'), lnk(2, 10, 0, 11, 0, 'MODEL'), lnk(3, 11, 0, -20, 0, 'MODEL')], 11, 3)
    unet = node(1, 'UNETLoader', [], [out('MODEL', 'MODEL', [11])], ['wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors', 'default'])
    inst = node(5, S_MODEL2, [inp('model', 'MODEL', 11)], [out('MODEL', 'MODEL', [12])], [], 0, {'proxyWidgets': []})
    msd = node(2, 'ModelSamplingSD3', [inp('model', 'MODEL', 12)], [out('MODEL', 'MODEL', None)], [8.0])
    c['06b_bypass_inside_subgraph'] = workflow([unet, inst, msd], [[11, 1, 0, 5, 0, 'MODEL'], [12, 5, 0, 2, 0, 'MODEL']], [sg2])
    # (8) root: UNETLoader -> LoraLoaderModelOnly (bypassed) -> Reroute -> ModelSamplingSD3
    unet = node(1, 'UNETLoader', [], [out('MODEL', 'MODEL', [1])], ['wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors', 'default'])
    lora = node(2, 'LoraLoaderModelOnly', [inp('model', 'MODEL', 1)], [out('MODEL', 'MODEL', [2])],
                ['lightx2v.safetensors', 1.0], mode=4)
    rr = node(3, 'Reroute', [inp('', '*', 2)], [out('', 'MODEL', [3])], None, 0, {'showOutputText': False, 'horizontal': False})
    msd = node(4, 'ModelSamplingSD3', [inp('model', 'MODEL', 3)], [out('MODEL', 'MODEL', None)], [8.0])
    c['08_bypassed_lora_then_reroute'] = workflow(
        [unet, lora, rr, msd], [[1, 1, 0, 2, 0, 'MODEL'], [2, 2, 0, 3, 0, 'MODEL'], [3, 3, 0, 4, 0, 'MODEL']])
    # (9) PrimitiveNode -> EmptyHunyuanLatentVideo.width ; LATENT -> SetNode "lat" ... GetNode "lat" -> SaveLatent
    pn = node(1, 'PrimitiveNode', [], [out('INT', 'INT', [1], widget='width')], [720, 'fixed'], 0,
              {'Run widget replace on values': False}, 'width')
    ehl = node(2, 'EmptyHunyuanLatentVideo', [inp('width', 'INT', 1, widget=True)], [out('LATENT', 'LATENT', [2])],
               [832, 480, 81, 1])
    setn = node(3, 'SetNode', [inp('LATENT', 'LATENT', 2)], [out('*', '*', None)], ['lat'], 0,
                {'previousName': 'lat'}, 'Set_lat')
    getn = node(4, 'GetNode', [], [out('LATENT', 'LATENT', [3])], ['lat'], 0, {}, 'Get_lat')
    c['09_primitivenode_and_setget'] = workflow(
        [pn, ehl, setn, getn, save_latent(5, 3, 'latents/case09')],
        [[1, 1, 0, 2, 0, 'INT'], [2, 2, 0, 3, 0, 'LATENT'], [3, 4, 0, 5, 0, 'LATENT']])
    return c


if __name__ == '__main__':
    for name, wf in cases().items():
        path = os.path.join(OUT, f'{name}.ui.json')
        with open(path, 'w') as f:
            json.dump(wf, f, indent=2)
            f.write('\n')
        print(path)
