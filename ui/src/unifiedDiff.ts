// Turns the server's unified diff (live `-` → desired `+`, 3 lines of context) into side-by-side
// rows: desired on the left, live on the right, changed lines paired up.

export interface Cell {
  no: number | null;
  text: string;
  /** ctx: same on both sides; add: only desired has it; del: only live has it; none: filler. */
  kind: 'ctx' | 'add' | 'del' | 'none';
}

export type SideRow = { gap: true; label: string } | { gap?: false; left: Cell; right: Cell };

export function sideBySide(unified: string): SideRow[] {
  const rows: SideRow[] = [];
  let liveNo = 0;
  let desiredNo = 0;
  let dels: Cell[] = [];
  let adds: Cell[] = [];
  const flush = () => {
    const n = Math.max(dels.length, adds.length);
    for (let i = 0; i < n; i++) {
      rows.push({
        left: adds[i] ?? { no: null, text: '', kind: 'none' },
        right: dels[i] ?? { no: null, text: '', kind: 'none' },
      });
    }
    dels = [];
    adds = [];
  };
  for (const line of unified.split('\n')) {
    if (line.startsWith('---') || line.startsWith('+++')) continue;
    const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/.exec(line);
    if (hunk) {
      flush();
      liveNo = Number(hunk[1]);
      desiredNo = Number(hunk[2]);
      rows.push({ gap: true, label: `lines ${desiredNo} (desired) / ${liveNo} (live)${hunk[3] ? ` ${hunk[3].trim()}` : ''}` });
      continue;
    }
    // A whole side that is `null`: the object does not exist there.
    if (line === '-null' && liveNo === 1) {
      dels.push({ no: null, text: '(not in the cluster)', kind: 'none' });
      liveNo++;
    } else if (line === '+null' && desiredNo === 1) {
      adds.push({ no: null, text: '(not in Git: will be pruned)', kind: 'none' });
      desiredNo++;
    } else if (line.startsWith('-')) dels.push({ no: liveNo++, text: line.slice(1), kind: 'del' });
    else if (line.startsWith('+')) adds.push({ no: desiredNo++, text: line.slice(1), kind: 'add' });
    else if (line.startsWith(' ')) {
      flush();
      const text = line.slice(1);
      rows.push({ left: { no: desiredNo++, text, kind: 'ctx' }, right: { no: liveNo++, text, kind: 'ctx' } });
    } else if (line.startsWith('\\')) continue;
  }
  flush();
  return rows;
}
