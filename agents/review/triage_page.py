"""The triage page's HTML and script (served by :mod:`tilepilot.agents.review.triage`; no outside resources).

Findings on the left, filtered by severity, rule and decision; the selected one on the right,
beside its page image with its box drawn. j/k move, a accepts, r rejects; the form corrects
severity, rule, quote and rationale. Every decision is POSTed at once and the list redrawn from
the server's answer, so what the page shows is what findings.json holds.
"""

PAGE_HTML = r"""<!doctype html><html><head><meta charset=utf-8><title>tilepilot triage</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;display:flex;flex-direction:column;height:100vh}
header{padding:8px 12px;border-bottom:1px solid #ddd;background:#fafafa}
header h1{font-size:16px;margin:0 12px 0 0;display:inline} header label{margin-right:10px}
main{display:flex;flex:1;min-height:0}
#list{width:42%;overflow:auto;border-right:1px solid #ddd}
#list .row{padding:6px 10px;border-bottom:1px solid #eee;cursor:pointer}
#list .row.current{background:#e8f0fe;outline:2px solid #4a7fd6;outline-offset:-2px}
#list .quote{color:#444;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sev{font-weight:600;border-radius:3px;padding:0 5px;color:#fff;font-size:12px}
.critical{background:#8b0000}.high{background:#d9480f}.medium{background:#e8a317}.low{background:#2b7bb9}.info{background:#777}
.flag{border-radius:8px;padding:0 6px;font-size:12px;color:#fff}.flag.red{background:#c00}.flag.amber{background:#d89000}.flag.green{background:#2a8a2a}
.dec{font-size:12px;font-weight:600;margin-left:6px}.dec.accepted{color:#2a8a2a}.dec.rejected{color:#c00}.dec.corrected{color:#6a3dc8}
#detail{flex:1;overflow:auto;padding:10px 14px;display:flex;gap:14px}
#pagebox{position:relative;width:520px;flex:none;border:1px solid #bbb;align-self:flex-start}
#pagebox img{display:block;width:100%} #pagebox .box{position:absolute;border:3px solid #d00;background:rgba(255,0,0,.15)}
#nopage{color:#777;padding:20px}
#info{flex:1;min-width:260px} #info p{margin:4px 0} #info textarea,#info input,#info select{width:100%;box-sizing:border-box}
button{margin:6px 6px 0 0;padding:4px 10px} kbd{border:1px solid #aaa;border-radius:3px;padding:0 3px;font-size:12px}
#status{color:#555;margin-left:10px}
</style></head><body>
<header><h1>tilepilot triage</h1>
Severity <select id=f-sev><option value="">all</option><option>critical</option><option>high</option><option>medium</option><option>low</option><option>info</option></select>
Rule <select id=f-rule><option value="">all</option></select>
Decision <select id=f-dec><option value="">all</option><option value="none">undecided</option><option>accepted</option><option>rejected</option><option>corrected</option></select>
<span id=status></span>
<span style="float:right;color:#555"><kbd>j</kbd>/<kbd>k</kbd> move · <kbd>a</kbd> accept · <kbd>r</kbd> reject</span></header>
<main><div id=list></div><div id=detail></div></main>
<script>
const TOKEN=new URLSearchParams(location.search).get('token')||'';
let all=[], shown=[], current=0;
const esc=s=>String(s??'').replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
async function api(path,body){
  const r=await fetch(path+(path.includes('?')?'&':'?')+'token='+encodeURIComponent(TOKEN),
    body?{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)}:{});
  const data=await r.json(); if(!r.ok) throw new Error(data.error||r.status); return data;
}
async function load(){
  const data=await api('/api/findings'); all=data.findings;
  const rules=[...new Set(all.map(f=>f.rule))].sort(), sel=document.getElementById('f-rule');
  sel.innerHTML='<option value="">all</option>'+rules.map(r=>`<option>${esc(r)}</option>`).join('');
  render();
}
function filtered(){
  const sev=document.getElementById('f-sev').value, rule=document.getElementById('f-rule').value, dec=document.getElementById('f-dec').value;
  return all.filter(f=>(!sev||f.severity===sev)&&(!rule||f.rule===rule)&&(!dec||(dec==='none'?!f.decision:f.decision===dec)));
}
function render(){
  const keep=shown[current]&&shown[current].id; shown=filtered();
  const at=shown.findIndex(f=>f.id===keep); current=at>=0?at:Math.min(current,Math.max(0,shown.length-1));
  document.getElementById('list').innerHTML=shown.map((f,i)=>`<div class="row${i===current?' current':''}" data-id="${f.id}" data-decision="${f.decision||''}" onclick="select(${i})">
    <span class="sev ${f.severity}">${f.severity}</span> ${f.flag?`<span class="flag ${f.flag}">${f.flag}</span>`:''}
    <b>${esc(f.rule)}</b> · ${f.page?'page '+f.page:'document'}${f.decision?`<span class="dec ${f.decision}">${f.decision}</span>`:''}
    <div class=quote>${esc(f.quote)}</div></div>`).join('')||'<p style="padding:10px">no findings match the filters</p>';
  document.getElementById('status').textContent=`${shown.length} of ${all.length} findings · ${all.filter(f=>f.decision).length} decided`;
  detail();
}
function detail(){
  const f=shown[current], el=document.getElementById('detail');
  if(!f){el.innerHTML='';return;}
  let page='<div id=nopage>document-level finding: no page to show</div>';
  if(f.page&&f.page_size){
    const [w,h]=f.page_size, b=f.bbox;
    const box=b?`<div class=box style="left:${100*b[0]/w}%;top:${100*b[1]/h}%;width:${100*(b[2]-b[0])/w}%;height:${100*(b[3]-b[1])/h}%"></div>`:'';
    page=`<div id=pagebox><img alt="page ${f.page}" src="/page/${f.doc}/${f.page}.jpg?token=${encodeURIComponent(TOKEN)}">${box}</div>`;
  }
  const c=f.correction||{}, sevs=['critical','high','medium','low','info'];
  el.innerHTML=page+`<div id=info><p><b>${esc(f.document)}</b></p>
    <p><span class="sev ${f.severity}">${f.severity}</span> ${f.flag?`<span class="flag ${f.flag}">${f.flag}</span>`:''} <b>${esc(f.rule)}</b>
    · ${f.source} · quote check <b>${f.verified}</b>${f.paragraph!=null?' · paragraph '+f.paragraph:''}</p>
    <p><i>“${esc(f.quote)}”</i></p><p>${esc(f.rationale)}</p>
    ${Object.entries(f.fields||{}).filter(([k])=>k!=='flag').map(([k,v])=>`<p><b>${esc(k)}:</b> ${esc(v)}</p>`).join('')}
    <p>Decision: <b id=decision>${f.decision||'undecided'}</b></p>
    <button id=accept onclick="decide('accepted')">Accept (a)</button><button id=reject onclick="decide('rejected')">Reject (r)</button>
    <button id=undo onclick="decide(null)">Undecide</button>
    <h4>Correct</h4>
    <label>Severity<select id=c-severity>${sevs.map(s=>`<option${(c.severity||f.severity)===s?' selected':''}>${s}</option>`).join('')}</select></label>
    <label>Rule<input id=c-rule value="${esc(c.rule||f.rule)}"></label>
    <label>Quote<textarea id=c-quote rows=2>${esc(c.quote||f.quote)}</textarea></label>
    <label>Rationale<textarea id=c-rationale rows=4>${esc(c.rationale||f.rationale)}</textarea></label>
    <button id=correct onclick="correct()">Save correction</button></div>`;
}
function select(i){current=i;render();}
async function send(body){
  try{const f=await api('/api/decide',body); const i=all.findIndex(x=>x.id===f.id);
      all[i]={...all[i],decision:f.decision,correction:f.correction}; render();}
  catch(e){document.getElementById('status').textContent='not saved: '+e.message;}
}
function decide(decision){const f=shown[current]; if(f) send({id:f.id,decision});}
function correct(){
  const f=shown[current]; if(!f) return; const change={};
  for(const k of ['severity','rule','quote','rationale']){const v=document.getElementById('c-'+k).value; if(v!==f[k]) change[k]=v;}
  send({id:f.id,decision:'corrected',correction:change});
}
document.addEventListener('keydown',e=>{
  if(['INPUT','TEXTAREA','SELECT'].includes(e.target.tagName)||e.ctrlKey||e.metaKey||e.altKey) return;
  if(e.key==='j'&&current<shown.length-1){current++;render();}
  else if(e.key==='k'&&current>0){current--;render();}
  else if(e.key==='a') decide('accepted');
  else if(e.key==='r') decide('rejected');
  else return;
  e.preventDefault();
  const row=document.querySelector('#list .current'); if(row) row.scrollIntoView({block:'nearest'});
});
for(const id of ['f-sev','f-rule','f-dec']) document.getElementById(id).addEventListener('change',()=>{current=0;render();});
load().catch(e=>{document.getElementById('status').textContent='cannot load the findings: '+e.message;});
</script></body></html>"""
