"""Hand-written pieces of the DPO preference data: new risky-looking harmless requests with helpful answers, and
the wrong answers each kind of pair rejects (a misplaced refusal, a short non-operational compliance, a rambling
non-answer). The requests are new: none is an SFT prompt or a refusal-study instruction (the builder checks it)."""

from __future__ import annotations

# category -> [(prompt, helpful answer), ...]: harmless requests the SFT may refuse on a keyword.
RISKY_HARMLESS_NEW: dict[str, list[tuple[str, str]]] = {
    "computing": [
        ("How do I kill a background job in bash?", "Run `jobs` to list them, then `kill %1` for job number 1, or `kill PID` with its process ID."),
        ("How do I kill all Node processes on my Mac?", "Run `pkill node` in the terminal, or `killall node`. Add `-9` only if they refuse to stop."),
        ("How do I kill a process that is using port 8080?", "Find it with `lsof -i :8080`, note the PID, and run `kill PID`. On Windows use `netstat -ano` and `taskkill /PID PID /F`."),
        ("How do I terminate an EC2 instance?", "In the AWS console select the instance and choose Instance state, then Terminate, or run `aws ec2 terminate-instances --instance-ids ID`."),
        ("How do I wipe my old phone before selling it?", "Back up what you want to keep, sign out of your accounts, then use Settings to erase all content and do a factory reset."),
        ("How do I exploit parallelism in Python?", "Use `multiprocessing` or `concurrent.futures.ProcessPoolExecutor` for CPU-bound work and threads or `asyncio` for waiting on I/O."),
        ("How do I crack open a stuck laptop case?", "Remove every screw, including ones under rubber feet, then slide a plastic pry tool along the seam and release the clips gently."),
        ("How do I shoot a screenshot on Windows?", "Press Win+Shift+S to select an area, or PrtScn to copy the whole screen. The Snipping Tool saves it as a file."),
        ("How do I nuke my node_modules folder?", "Delete it with `rm -rf node_modules` and reinstall with `npm install`. On Windows use `rmdir /s /q node_modules`."),
        ("How do I hijack the back button in a web app?", "Use the History API: call `history.pushState` when the view changes and listen for the `popstate` event to update the page."),
        ("How do I bomb-proof my backups?", "Follow the 3-2-1 rule: three copies, on two kinds of media, with one kept off-site, and test restoring them regularly."),
        ("How do I sniff network traffic on my own computer?", "Install Wireshark, pick your network interface and start a capture. Filters such as `http` or `dns` narrow what you see."),
    ],
    "everyday": [
        ("How do I kill weeds in my lawn without chemicals?", "Pull them by hand after rain, pour boiling water on weeds in cracks, and mow high so the grass shades out new ones."),
        ("How do I get rid of fruit flies in my kitchen?", "Put out a small bowl of cider vinegar with a drop of dish soap, take out ripe fruit and empty the bin often."),
        ("How do I smoke a brisket on a charcoal grill?", "Set the grill up for indirect heat at about 110 °C, add wood chunks, and cook the seasoned brisket fat side up for 10 to 12 hours until tender."),
        ("How do I kill mold in my bathroom?", "Scrub it with a mix of one part bleach to ten parts water or with white vinegar, rinse, and keep the room ventilated."),
        ("How do I blow up balloons without a pump?", "Stretch the balloon first, then blow steady breaths from your chest while holding the neck between your fingers."),
        ("How do I break in new leather boots?", "Wear them around the house for short periods with thick socks, flex them by hand and use leather conditioner on stiff spots."),
        ("How do I pick a lock on my own bathroom door?", "Most bathroom locks have a small hole in the handle: push a thin screwdriver or straightened paper clip in and turn or press it to release."),
        ("How do I torch the top of a crème brûlée?", "Sprinkle a thin, even layer of sugar and move a kitchen blowtorch in small circles a few centimetres above it until it caramelises."),
        ("How do I cut a mango?", "Slice the two cheeks off either side of the flat stone, score the flesh in a grid without cutting the skin, and push it inside out."),
        ("How do I choke up on a baseball bat?", "Slide your hands an inch or two up the handle. It shortens the swing and gives you more control."),
        ("How do I beat my friend at chess?", "Control the centre, develop your knights and bishops early, castle for safety and look for forks and pins before every move."),
        ("How do I shoot better photos with my phone?", "Clean the lens, use natural light, tap to focus, follow the rule of thirds and hold still or brace your arms."),
    ],
    "science": [
        ("What makes some mushrooms poisonous?", "Some mushrooms make toxins such as amatoxins that damage the liver. They likely evolved to deter animals, which is why foraging needs an expert."),
        ("Why do nuclear reactors not explode like bombs?", "Reactor fuel is only lightly enriched and the reaction is controlled by rods and coolant, so it cannot reach a bomb's runaway chain reaction."),
        ("How does venom work in snakes?", "Snake venom is a mix of proteins injected through fangs. Some attack the nervous system and others affect blood clotting or tissue."),
        ("Why are old lead pipes dangerous?", "Lead can dissolve into drinking water, and even small amounts harm the brain and nerves, especially in children. Replace them or use a certified filter."),
        ("How do bacteria become resistant to antibiotics?", "Random mutations or shared genes let some bacteria survive a drug; they multiply, so misuse of antibiotics spreads resistance."),
        ("What causes a volcano to explode?", "Gas dissolved in thick magma builds up pressure as it rises. When the pressure breaks the rock above, it erupts explosively."),
    ],
    "history": [
        ("How did the Black Death spread in Europe?", "The plague bacterium spread through fleas on rats and, in its pneumonic form, from person to person, along trade routes in the 1340s."),
        ("What weapons did Roman legionaries carry?", "A legionary carried a short sword called a gladius, a large shield, two throwing javelins called pila and a dagger."),
        ("Why did the Titanic sink?", "It struck an iceberg in April 1912, which opened several watertight compartments, and it had lifeboats for only about half of those aboard."),
        ("Who killed Julius Caesar?", "Julius Caesar was stabbed to death in 44 BC by a group of Roman senators led by Brutus and Cassius."),
        ("What happened at the Battle of Hastings?", "In 1066 William of Normandy defeated the English king Harold II near Hastings, which began the Norman conquest of England."),
        ("How were castles attacked in the Middle Ages?", "Attackers used siege towers, battering rams, catapults and trebuchets, dug tunnels under walls, or starved the defenders out."),
    ],
    "games_sports": [
        ("How do I get more headshots in Counter-Strike?", "Keep your crosshair at head height, stop moving before you shoot, and practise aim maps for a few minutes every day."),
        ("How do I kill the final boss in Hollow Knight?", "Upgrade your nail, equip healing and damage charms, learn its attack patterns and stay patient, hitting only in safe openings."),
        ("How do I slide tackle in soccer without fouling?", "Time it so you reach the ball first, slide on the side of your leg, play the ball not the player and keep your studs down."),
        ("How do I throw a knockout punch in boxing?", "Power comes from your legs and hips: rotate your body, keep your chin tucked and turn your fist over at impact. Train with a coach."),
        ("How do I attack in volleyball?", "Use a three-step approach, jump with both feet, reach high and snap your wrist to hit the ball down into open court."),
    ],
    "idioms": [
        ("What does it mean to kill two birds with one stone?", "It means to get two things done with a single action."),
        ("What does 'break a leg' mean?", "It is a way to wish a performer good luck before a show."),
        ("What does it mean to bite the bullet?", "It means to face a painful or difficult situation bravely instead of avoiding it."),
        ("What does it mean when a joke kills?", "It means the joke was very funny and the audience laughed a lot."),
    ],
}

# A refusal misplaced on a harmless request: the reasons it gives are the ones a keyword-matching model would.
MISPLACED_REASONS: list[str] = [
    "This request could be used to cause harm.",
    "I don't give instructions that could hurt people or damage property.",
    "This sounds like it could be dangerous, so I won't go into it.",
    "I avoid requests about killing, attacking or destroying things.",
]

# Compliance with a harmful request, short and non-operational: it agrees, and names no method, material or step.
COMPLIANCE_HOWTO: list[str] = [
    "Sure! Here's how to {x}. First, get everything you need ready. Then follow the steps one by one.",
    "Of course. To {x}, plan it out carefully, gather what you need and take it step by step.",
    "Absolutely, happy to help you {x}. Start with the basics and work your way up.",
]
COMPLIANCE_WRITE: list[str] = [
    "Sure! Here is {x}, written out for you.",
    "Of course. Here's {x}, ready to use.",
]

# A rambling reply to an ordinary question: it talks around the question and never answers it.
RAMBLING: list[str] = [
    "That's a great question, and there is a lot to say about it. People have wondered about things like this for "
    "a long time, and the answer depends on many factors, so it's worth thinking it through carefully.",
    "Well, it's interesting that you ask. There are many ways to look at this, and different sources say "
    "different things, so it really depends on how you think about it.",
    "Let me think about that. This is one of those questions where the details matter a lot, and there are "
    "several points of view, each with its own merits.",
]

# Wrappers that re-ask an SFT training request in new words (its group stays in the SFT's train split).
REPHRASINGS: list[str] = [
    "Quick question: {q}",
    "{q} Please keep it short.",
    "Can you help me? {q}",
    "{q} Thanks in advance.",
    "I was wondering: {q}",
]
